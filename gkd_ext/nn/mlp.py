"""A graph-agnostic MLP with the models' interface (a baseline and a KD student)."""
from __future__ import annotations

from typing import List, Optional, Tuple

import torch
from torch import nn
import torch.nn.functional as F

from ..graph import Graph
from ..sampling import Blocks
from .base import GraphModel
from .functional import feature_dropout, feature_linear, leading_rows


class MLP(GraphModel):
    """``num_layers`` linear layers with ReLU in between. ``forward(graph, x)`` ignores the
    graph (it may be None) and returns the logits and the pre-activation output of every hidden
    layer, like the GNNs, so it can stand in as a student or a baseline."""

    def __init__(self, in_dim: int, hidden: int, out_dim: int, num_layers: int = 2,
                 dropout: float = 0.5):
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"MLP: 'num_layers' must be >= 1, got {num_layers}")
        dims = [in_dim] + [hidden] * (num_layers - 1) + [out_dim]
        self.lins = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))
        self.dropout = dropout
        self._hidden_dims = dims[1:-1]

    def prepare(self, graph: Optional[Graph]) -> None:
        return None   # the graph is never read

    def prepare_blocks(self, blocks: Blocks) -> Blocks:
        return blocks

    def forward(self, graph: Optional[Graph], x: torch.Tensor) -> Tuple[torch.Tensor, List[torch.Tensor]]:
        if isinstance(graph, Blocks):   # a sampled batch: only the rows its outputs keep
            x = leading_rows(x, graph.num_hidden_rows)
        hidden = []
        for i, lin in enumerate(self.lins):
            x = feature_dropout(x, self.dropout, self.training)
            x = feature_linear(lin, x)
            if i < len(self.lins) - 1:
                hidden.append(x)
                x = F.relu(x)
        return x, hidden
