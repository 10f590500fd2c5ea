"""Graph-level models: any node model of :mod:`gkd_ext.nn` with a pooling readout."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Hashable, List, Tuple

import torch
from torch import nn
import torch.nn.functional as F

from ..graph import Graph
from .base import GraphModel
from .functional import global_pool


@dataclass
class Pool:
    """Which graph each node row belongs to: ``index [N]`` int64 in ``[0, num_graphs)``."""
    index: torch.Tensor
    num_graphs: int


class GraphClassifier(GraphModel):
    """Graph classification from a node model: the ``encoder`` (built with ``out_dim =
    hidden``) embeds the nodes, their ReLU is pooled per graph (``pool``: sum, mean or max, as
    :func:`global_pool`), and an MLP head ``Linear -> ReLU -> Dropout -> Linear`` maps the
    pooled vector to the class logits.

    ``forward(inputs, x, pool)`` returns ``(logits [num_graphs, C], hidden)``, where ``hidden``
    holds the encoder's hidden outputs followed by its node embeddings (all node-level, so the
    structure losses apply to them)."""

    def __init__(self, encoder: GraphModel, hidden: int, out_dim: int, pool: str = "sum",
                 dropout: float = 0.5):
        super().__init__()
        self.encoder, self.pool, self.dropout = encoder, pool, dropout
        self.head = nn.Sequential(nn.Linear(hidden, hidden), nn.ReLU(), nn.Dropout(dropout),
                                  nn.Linear(hidden, out_dim))
        self._hidden_dims = encoder.hidden_dims + [hidden]

    def prepare(self, graph: Graph) -> Any:
        return self.encoder.prepare(graph)

    def prepare_key(self) -> Hashable:
        return self.encoder.prepare_key()

    def forward(self, inputs: Any, x: torch.Tensor, pool: Pool) -> Tuple[torch.Tensor, List[torch.Tensor]]:
        nodes, hidden = self.encoder(inputs, x)
        pooled = global_pool(F.relu(nodes), pool.index, pool.num_graphs, self.pool)
        return self.head(pooled), hidden + [nodes]
