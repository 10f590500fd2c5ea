"""Tasks: what `fit` trains on. A task yields batches, builds models for its kind of output,
says what the supervised loss is, and scores predictions with its dataset's metric.

- :class:`NodeTask`: node classification on one graph; the full graph is one batch.
- :class:`GraphTask`: graph classification; mini-batches of graphs, each one block-diagonal
  :class:`~gkd_ext.Graph` plus the graph index of every node for pooling.

A :class:`Batch` names the global ids of its rows (``node_ids`` for the graph's nodes,
``target_ids`` for the output rows), so outputs computed once over the whole data (a frozen
teacher's) can be gathered for any batch, and sampled subgraphs (rectangular blocks) can be
added as another task without touching the methods.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Hashable, Iterator, List, Optional, Tuple

import torch
from torch import nn
import torch.nn.functional as F

from ..graph import Graph
from ..data.features import NORMS
from ..nn import GraphClassifier, Pool
from .config import ModelSpec, option
from .metrics import get_metric

Tensor = torch.Tensor


@dataclass
class Batch:
    """One step's data.

    ``graph`` holds the edges among the rows of ``x`` (the rows hidden outputs live on);
    ``y`` the targets of the output rows; ``loss_rows`` (bool mask or index, None: all) the
    output rows the supervised loss covers; ``pool`` maps nodes to graphs for graph-level
    outputs. ``key`` identifies a batch that recurs unchanged (the full graph, an evaluation
    batch), so what is derived from it can be cached.
    """
    graph: Graph
    x: Tensor
    y: Tensor
    loss_rows: Optional[Tensor] = None
    node_ids: Optional[Tensor] = None
    target_ids: Optional[Tensor] = None
    pool: Optional[Pool] = None
    key: Optional[Hashable] = None


def run_model(model: nn.Module, inputs, batch: Batch):
    """``(logits, hidden)`` of ``model`` on ``batch`` given its prepared ``inputs``."""
    if batch.pool is None:
        return model(inputs, batch.x)
    return model(inputs, batch.x, batch.pool)


class Task:
    """What every task provides to :func:`gkd_ext.train.fit` (see the module docstring)."""
    name: str
    metric: str
    num_features: int
    num_classes: int
    multilabel: bool = False
    device: torch.device

    def build_model(self, spec: ModelSpec) -> nn.Module:
        return spec.build(self.num_features, self.num_classes)

    def train_batches(self) -> Iterator[Batch]:
        raise NotImplementedError

    def eval_batches(self) -> Iterator[Batch]:
        """Batches covering every target once, in a fixed order."""
        raise NotImplementedError

    @property
    def num_targets(self) -> int:
        raise NotImplementedError

    def split_rows(self) -> Dict[str, Tensor]:
        """``{"train", "val", "test"}``: the target rows of each split."""
        raise NotImplementedError

    def loss(self, logits: Tensor, batch: Batch) -> Tensor:
        """The supervised loss on the batch's ``loss_rows``: cross-entropy, or binary
        cross-entropy with logits for multi-label targets."""
        rows = batch.loss_rows
        z, y = (logits, batch.y) if rows is None else (logits[rows], batch.y[rows])
        if self.multilabel:
            return F.binary_cross_entropy_with_logits(z, y.float())
        return F.cross_entropy(z, y)

    def targets(self) -> Tensor:
        raise NotImplementedError

    def score(self, logits: Tensor) -> Dict[str, float]:
        """The metric on each split, from the logits of all targets (in target order)."""
        fn = get_metric(self.metric)
        y = self.targets()
        return {name: fn(logits, y, rows) for name, rows in self.split_rows().items()}

    def signature(self) -> Dict:
        """What identifies the data and split a model was trained on (checkpoints check it)."""
        rows = self.split_rows()
        return {"task": type(self).__name__, "name": self.name, "targets": self.num_targets,
                "features": self.num_features, "classes": self.num_classes,
                "split": {k: [int(_count(v)), int(_index(v).sum())] for k, v in rows.items()}}

    def describe(self) -> Dict:
        return {**self.signature(), "metric": self.metric}


def _count(rows: Tensor) -> int:
    return int(rows.sum()) if rows.dtype == torch.bool else rows.numel()


def _index(rows: Tensor) -> Tensor:
    return rows.nonzero().view(-1) if rows.dtype == torch.bool else rows


@dataclass
class Split:
    """Boolean train/validation/test masks over the targets."""
    train: Tensor
    val: Tensor
    test: Tensor


class NodeTask(Task):
    """Node classification on one graph, full batch: every step sees the whole graph and the
    loss covers the training nodes."""

    def __init__(self, x: Tensor, y: Tensor, graph: Graph, split: Split, *, multilabel: bool = False,
                 metric: Optional[str] = None, name: str = "graph",
                 device: torch.device = torch.device("cpu")):
        self.device = torch.device(device)
        self.x, self.y = x.to(self.device), y.to(self.device)
        self.split = Split(split.train.to(self.device), split.val.to(self.device),
                           split.test.to(self.device))
        self.graph = graph.to(self.device)
        self.multilabel = multilabel
        self.metric = metric or ("micro_f1" if multilabel else "accuracy")
        get_metric(self.metric)
        self.name = name
        self.num_features = x.size(1)
        self.num_classes = y.size(1) if multilabel else int(y.max()) + 1
        self._batch = Batch(self.graph, self.x, self.y, loss_rows=self.split.train, key="full")

    @property
    def num_targets(self) -> int:
        return self.x.size(0)

    def train_batches(self) -> Iterator[Batch]:
        yield self._batch

    def eval_batches(self) -> Iterator[Batch]:
        yield self._batch

    def targets(self) -> Tensor:
        return self.y

    def split_rows(self) -> Dict[str, Tensor]:
        return {"train": self.split.train, "val": self.split.val, "test": self.split.test}


class GraphTask(Task):
    """Graph classification over a :class:`~gkd_ext.data.GraphDataset`, on the graphs
    ``train``, ``val`` and ``test`` (int64 graph ids). Training batches hold ``batch_size``
    graphs drawn in a fresh order each epoch (from torch's global generator, so a resumed run
    draws the same order); models get a pooling readout (:class:`~gkd_ext.nn.GraphClassifier`)."""

    EVAL_BATCH = 512

    def __init__(self, dataset, train: Tensor, val: Tensor, test: Tensor, *,
                 batch_size: int = 32, readout: str = "sum",
                 device: torch.device = torch.device("cpu")):
        if batch_size < 1:
            raise ValueError(f"GraphTask: 'batch_size' must be >= 1, got {batch_size}")
        self.device = torch.device(device)
        self.data = dataset
        self.name = dataset.name.lower()
        self.metric = "accuracy"
        self.num_features = dataset.num_features
        self.num_classes = dataset.num_classes
        self.rows = {"train": torch.as_tensor(train).long(), "val": torch.as_tensor(val).long(),
                     "test": torch.as_tensor(test).long()}
        self.batch_size, self.readout = batch_size, readout
        self._eval: List[Batch] = []

    def build_model(self, spec: ModelSpec) -> nn.Module:
        encoder = spec.build(self.num_features, spec.hidden)
        return GraphClassifier(encoder, spec.hidden, self.num_classes, pool=self.readout,
                               dropout=spec.dropout)

    @property
    def num_targets(self) -> int:
        return self.data.num_graphs

    def targets(self) -> Tensor:
        return self.data.y

    def split_rows(self) -> Dict[str, Tensor]:
        return self.rows

    def collate(self, graph_ids: Tensor, key: Optional[Hashable] = None) -> Batch:
        graph, x, index, y = self.data.collate(graph_ids)
        nodes = self.data.node_ids(graph_ids)
        dev = self.device
        return Batch(graph.to(dev), x.to(dev), y.to(dev), node_ids=nodes.to(dev),
                     target_ids=graph_ids.to(dev), pool=Pool(index.to(dev), graph_ids.numel()),
                     key=key)

    def train_batches(self) -> Iterator[Batch]:
        order = self.rows["train"][torch.randperm(self.rows["train"].numel())]
        for start in range(0, order.numel(), self.batch_size):
            yield self.collate(order[start:start + self.batch_size])

    def eval_batches(self) -> Iterator[Batch]:
        if not self._eval:
            ids = torch.arange(self.data.num_graphs)
            self._eval = [self.collate(ids[s:s + self.EVAL_BATCH], key=("eval", s))
                          for s in range(0, ids.numel(), self.EVAL_BATCH)]
        return iter(self._eval)


# ------------------------------------------------------------------ building tasks from data
@dataclass
class DataConfig:
    """Which data a run trains on, how it is split, and where it runs."""
    dataset: str = option("cora", help="a dataset name (cora, citeseer, amazon-photo, "
                          "coauthor-cs, chameleon-filtered, minesweeper, mutag, proteins, "
                          "synthetic-csbm, ...); all but the bundled cora and the generated "
                          "synthetic-csbm[-heterophilous] need --data-dir")
    data_dir: Optional[str] = option(None, help="folder laid out like shared/data (shchur_npz/, "
                                     "planetoid/, heterophilous/, tudataset/); default $GKD_DATA")
    split: int = option(0, help="which of a dataset's fixed splits (heterophilous sets: 0-9)",
                        min=0)
    lcc: Optional[bool] = option(None, help="keep only the largest connected component "
                                 "(default: the dataset family's protocol, on for Shchur sets)")
    folds: int = option(10, help="graph classification: stratified cross-validation folds", min=2)
    val_fraction: float = option(0.1, help="graph classification: the part of the training "
                                 "folds held out for validation", above=0.0, max=0.5)
    batch_size: int = option(32, help="graph classification: graphs per training batch", min=1)
    readout: str = option("sum", help="graph classification: pooling of node embeddings",
                          choices=("sum", "mean", "max"))
    features: str = option("l2", help="row normalisation of non-negative (bag-of-words) "
                           "features: l2 (unit length), sum (sum 1), none", choices=NORMS)
    device: str = option("cpu", help="cpu or cuda")


def stratified_holdout(y: Tensor, idx: Tensor, fraction: float, seed: int) -> Tuple[Tensor, Tensor]:
    """Split the ids ``idx`` into (kept, held out), holding out about ``fraction`` of each
    class (at least one item of every class), seeded."""
    gen = torch.Generator().manual_seed(seed)
    held = []
    for c in torch.unique(y[idx]).tolist():
        members = idx[y[idx] == c]
        members = members[torch.randperm(members.numel(), generator=gen)]
        held.append(members[:max(1, round(fraction * members.numel()))])
    held_out = torch.cat(held).sort().values
    return idx[~torch.isin(idx, held_out)], held_out


def build_tasks(cfg: DataConfig, seed: int) -> List[Tuple[str, Task]]:
    """The tasks of one seed: one :class:`NodeTask` for a node dataset (its split drawn with
    ``seed`` where the protocol draws one), or one :class:`GraphTask` per cross-validation
    fold of a graph dataset (folds and validation parts drawn with ``seed``), each named."""
    from ..data import GraphDataset, load_dataset, node_features, stratified_kfold
    data = load_dataset(cfg.dataset, data_dir=cfg.data_dir, split=cfg.split, seed=seed,
                        lcc=cfg.lcc)
    if isinstance(data, GraphDataset):
        tasks = []
        for k, (train, test) in enumerate(stratified_kfold(data.y, cfg.folds, seed=seed)):
            train, val = stratified_holdout(data.y, train, cfg.val_fraction, seed * cfg.folds + k)
            tasks.append((f"fold{k}", GraphTask(data, train, val, test, batch_size=cfg.batch_size,
                                                readout=cfg.readout, device=cfg.device)))
        return tasks
    train, val, test = data.masks()
    x = node_features(data.x, cfg.features)
    return [("", NodeTask(x, data.y, data.graph, Split(train, val, test),
                          multilabel=data.multilabel, metric=data.metric, name=data.name,
                          device=cfg.device))]
