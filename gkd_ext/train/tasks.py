"""Tasks: what `fit` trains on. A task yields batches, builds models for its kind of output,
says what the supervised loss is, and scores predictions with its dataset's metric.

- :class:`NodeTask`: node classification on one graph; the full graph is one batch.
- :class:`InductiveNodeTask`: node classification with part of the test nodes held out of
  training (GLNN's inductive setting): training, and every frozen teacher's outputs, see only
  the graph induced on the observed nodes; the held-out nodes and their edges appear only at
  inference.
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

from .. import distributed
from ..graph import Graph
from ..data.features import NORMS
from ..sampling import Blocks, NeighborSampler
from ..nn import GraphClassifier, Pool
from .config import ModelSpec, option
from .metrics import get_metric

Tensor = torch.Tensor
# The key of a node task's whole-graph batch: what models prepare on it is shared by every use
# of the whole graph (evaluation, frozen teachers, row-wise models on sampled batches).
FULL_GRAPH_KEY = "full"


@dataclass
class Batch:
    """One step's data.

    ``graph`` holds the edges among the rows hidden outputs live on (the rows of ``x``, or
    for a sampled batch the last hidden layer's rows); ``y`` the targets of the output rows;
    ``loss_rows`` (bool mask or index, None: all) the output rows the supervised loss covers;
    ``pool`` maps nodes to graphs for graph-level outputs; ``blocks`` are a sampled batch's
    per-layer blocks (models run on them, ``x`` holding their input rows). ``key`` identifies
    a batch that recurs unchanged (the full graph, an evaluation batch), so what is derived
    from it can be cached.
    """
    graph: Graph
    x: Tensor
    y: Tensor
    loss_rows: Optional[Tensor] = None
    node_ids: Optional[Tensor] = None
    target_ids: Optional[Tensor] = None
    pool: Optional[Pool] = None
    key: Optional[Hashable] = None
    blocks: Optional[Blocks] = None
    # Under data-parallel training: the factor that makes the supervised loss's mean over this
    # rank's labelled rows, averaged over the ranks by DDP, the mean over the global batch's.
    loss_scale: Optional[float] = None
    # A sampled batch: its seeds are the first this many hidden rows (the rest are their
    # sampled neighbours, which losses over edges read).
    seed_rows: Optional[int] = None


def run_model(model: nn.Module, inputs, batch: Batch):
    """``(logits, hidden)`` of ``model`` on ``batch`` given its prepared ``inputs``. On a
    sampled batch the logits are the seeds' and every hidden output keeps the last hidden
    layer's rows, so that all layers (and all models, whatever their depth) align row for row
    with ``batch.node_ids``."""
    if batch.pool is not None:
        return model(inputs, batch.x, batch.pool)
    logits, hidden = model(inputs, batch.x)
    if batch.blocks is not None:
        rows = batch.blocks.num_hidden_rows
        logits, hidden = logits[: batch.blocks.num_seeds], [h[:rows] for h in hidden]
    return logits, hidden


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

    def train_batches(self, unlabelled: bool = True) -> Iterator[Batch]:
        """One epoch's batches. ``unlabelled=False`` says the method reads labelled nodes only
        (:attr:`~gkd_ext.train.method.Method.reads_unlabelled`), so a mini-batch task may draw
        its seeds from the training nodes alone; a full-graph batch holds every node anyway."""
        raise NotImplementedError

    def eval_batches(self) -> Iterator[Batch]:
        """Batches covering every target once, in a fixed order."""
        raise NotImplementedError

    def frozen_batches(self) -> Iterator[Batch]:
        """The batches frozen participants (teachers) are run on for training: by default
        the evaluation batches; a task that hides data from training (inductive) gives only
        what training may see. Rows they do not cover stay NaN and are never read."""
        return self.eval_batches()

    @property
    def num_targets(self) -> int:
        raise NotImplementedError

    @property
    def num_nodes(self) -> int:
        """Rows of the hidden outputs over the whole data."""
        raise NotImplementedError

    def split_rows(self) -> Dict[str, Tensor]:
        """``{"train", "val", "test"}``: the target rows of each split."""
        raise NotImplementedError

    def loss(self, logits: Tensor, batch: Batch) -> Tensor:
        """The supervised loss on the batch's ``loss_rows``: cross-entropy, or binary
        cross-entropy with logits for multi-label targets."""
        rows = batch.loss_rows
        z, y = (logits, batch.y) if rows is None else (logits[rows], batch.y[rows])
        if z.size(0) == 0:   # a mini-batch without labelled nodes
            return logits.sum() * 0.0
        if self.multilabel:
            loss = F.binary_cross_entropy_with_logits(z, y.float())
        else:
            loss = F.cross_entropy(z, y)
        return loss if batch.loss_scale is None else loss * batch.loss_scale

    def targets(self) -> Tensor:
        raise NotImplementedError

    def score(self, logits: Tensor) -> Dict[str, float]:
        """The metric on each split, from the logits of all targets (in target order)."""
        fn = get_metric(self.metric)
        y = self.targets()
        return {name: fn(logits, y, rows) for name, rows in self.split_rows().items()}

    def signature(self) -> Dict:
        """What identifies the data and split a model was trained on (checkpoints check it),
        with the graph transforms applied (``transforms``, e.g. SDRF), when any."""
        rows = self.split_rows()
        sig = {"task": type(self).__name__, "name": self.name, "targets": self.num_targets,
               "features": self.num_features, "classes": self.num_classes,
               "split": {k: [int(_count(v)), int(_index(v).sum())] for k, v in rows.items()}}
        if getattr(self, "transforms", None):
            sig["transforms"] = self.transforms
        return sig

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
                 device: torch.device = torch.device("cpu"),
                 transforms: Optional[Dict] = None):
        self.transforms = dict(transforms or {})
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
        self._batch = Batch(self.graph, self.x, self.y, loss_rows=self.split.train,
                            key=FULL_GRAPH_KEY)

    @property
    def num_targets(self) -> int:
        return self.x.size(0)

    @property
    def num_nodes(self) -> int:
        return self.x.size(0)

    def train_batches(self, unlabelled: bool = True) -> Iterator[Batch]:
        yield self._batch

    def eval_batches(self) -> Iterator[Batch]:
        yield self._batch

    def targets(self) -> Tensor:
        return self.y

    def split_rows(self) -> Dict[str, Tensor]:
        return {"train": self.split.train, "val": self.split.val, "test": self.split.test}


class SampledNodeTask(NodeTask):
    """Node classification in mini-batches: each epoch the seed nodes are shuffled (from
    torch's global generator, so a resumed run draws the same order) into batches of
    ``batch_nodes``: every node, as the full graph's distillation terms cover every node,
    with the supervised loss on the training nodes among them; or the training nodes alone
    for a method whose losses read labels only (``unlabelled=False``). Each batch has its
    neighbourhood sampled by a
    :class:`~gkd_ext.sampling.NeighborSampler` of ``fanouts`` (one per layer, input side first;
    -1 takes all). Evaluation and frozen teachers run on the full graph (layer-wise inference
    over every node), so scores are those of the full-batch task."""

    def __init__(self, x: Tensor, y: Tensor, graph: Graph, split: Split, *, fanouts: List[int],
                 batch_nodes: int = 1024, replace: bool = False, **kwargs):
        super().__init__(x, y, graph, split, **kwargs)
        if batch_nodes < 1:
            raise ValueError(f"SampledNodeTask: 'batch_nodes' must be >= 1, got {batch_nodes}")
        self.sampler = NeighborSampler(self.graph, fanouts, replace=replace)
        self.batch_nodes = batch_nodes
        self.train_ids = _index(self.split.train)

    def train_batches(self, unlabelled: bool = True) -> Iterator[Batch]:
        from ..data import select_rows
        # The epoch's order and hop seeds come from one seed drawn from torch's generator (so a
        # resumed run repeats them) and, under torchrun, rank 0's: the ranks must agree on the
        # global batches even where their generators have drifted apart (dropout draws as
        # many numbers as a rank's batch has entries).
        base = int(torch.randint(0, 2 ** 62, (1,)))
        if distributed.active():
            base = distributed.broadcast_int(base, self.device)
        gen = torch.Generator().manual_seed(base)
        ids = torch.arange(self.num_nodes) if unlabelled else self.train_ids.cpu()
        order = ids[torch.randperm(ids.numel(), generator=gen)].to(self.device)
        for start in range(0, order.numel(), self.batch_nodes):
            # Under torchrun, each rank takes an equal share of the global batch; the sample of
            # a node depends only on (hop seed, node), so the ranks' blocks together are the
            # single process's.
            seeds = distributed.shard(order[start:start + self.batch_nodes])
            if seeds.numel() == 0:   # fewer seeds left than ranks: every rank skips them
                continue
            blocks = self.sampler.sample(seeds, seed=int(torch.randint(0, 2 ** 62, (1,), generator=gen)))
            labelled = self.split.train[seeds]
            scale = None
            if distributed.active():
                total = distributed.all_sum(int(labelled.sum()), self.device)
                scale = int(labelled.sum()) * distributed.world_size() / max(total, 1.0)
            yield Batch(blocks.graphs[-1], select_rows(self.x, blocks.node_ids), self.y[seeds],
                        loss_rows=labelled, node_ids=blocks.node_ids[: blocks.num_hidden_rows],
                        target_ids=seeds, blocks=blocks, loss_scale=scale,
                        seed_rows=seeds.numel())

    def signature(self) -> Dict:
        # Sampling changes how a model trains, not the data and split it sees: a teacher
        # trained on the full graph loads in a mini-batch run, and the reverse.
        return {**super().signature(), "task": NodeTask.__name__}

    def describe(self) -> Dict:
        return {**super().describe(), "sampling": {"fanouts": self.sampler.fanouts,
                                                   "batch_nodes": self.batch_nodes,
                                                   "replace": self.sampler.replace}}


def observed_subgraph(graph: Graph, observed: Tensor) -> Tuple[Graph, Tensor]:
    """The graph induced on the nodes where ``observed`` (bool ``[N]``) holds, renumbered in
    order, and the global ids of its nodes: every edge at an unobserved node is dropped."""
    ids = observed.nonzero().view(-1)
    new_id = torch.full((graph.num_dst,), -1, dtype=torch.long, device=observed.device)
    new_id[ids] = torch.arange(ids.numel(), device=observed.device)
    ei = graph.edge_index
    keep = observed[ei[0]] & observed[ei[1]]
    return Graph.from_edge_index(new_id[ei[:, keep]], ids.numel()), ids


class InductiveNodeTask(NodeTask):
    """Node classification where the test nodes in ``held_out`` (bool ``[N]``, a subset of the
    test split) and every edge at them are hidden from training, as in GLNN's inductive
    setting.

    Training batches hold the graph induced on the observed nodes (``train_graph``, by default
    :func:`observed_subgraph` of ``graph``; pass a rewired one to keep a transform off the
    held-out part), their features and labels only; frozen teachers are run on that batch too
    (:meth:`frozen_batches`). Evaluation runs on the full ``graph``. Splits: ``test`` is the
    held-out (inductive) test nodes, ``test_observed`` the test nodes seen during training
    (the transductive part), ``test_all`` both; ``train`` and ``val`` as given.
    """

    def __init__(self, x: Tensor, y: Tensor, graph: Graph, split: Split, held_out: Tensor, *,
                 train_graph: Optional[Graph] = None, **kwargs):
        super().__init__(x, y, graph, split, **kwargs)
        held_out = torch.as_tensor(held_out, dtype=torch.bool, device=self.device)
        if held_out.shape != (self.num_nodes,):
            raise ValueError(f"InductiveNodeTask: 'held_out' must be a bool mask of shape "
                             f"[{self.num_nodes}], got {list(held_out.shape)}")
        if bool((held_out & ~self.split.test).any()):
            raise ValueError("InductiveNodeTask: 'held_out' must only hold test nodes")
        self.held_out = held_out
        observed = ~held_out
        sub, ids = observed_subgraph(self.graph, observed)
        if train_graph is None:
            train_graph = sub
        train_graph = train_graph.to(self.device)
        if train_graph.num_dst != ids.numel():
            raise ValueError(f"InductiveNodeTask: 'train_graph' must have one node per observed "
                             f"node ({ids.numel()}), got {train_graph.num_dst}")
        from ..data import select_rows
        self.observed_ids = ids
        self._train = Batch(train_graph, select_rows(self.x, ids), self.y[ids],
                            loss_rows=self.split.train[ids], node_ids=ids, target_ids=ids,
                            key="observed")

    def train_batches(self, unlabelled: bool = True) -> Iterator[Batch]:
        yield self._train

    def frozen_batches(self) -> Iterator[Batch]:
        yield self._train

    def split_rows(self) -> Dict[str, Tensor]:
        test = self.split.test
        return {"train": self.split.train, "val": self.split.val, "test": test & self.held_out,
                "test_observed": test & ~self.held_out, "test_all": test}


def inductive_holdout(test: Tensor, fraction: float, seed: int) -> Tensor:
    """A bool mask of ``round(fraction * |test|)`` test nodes drawn with ``seed`` (at least one
    when ``fraction > 0``): the nodes an inductive task holds out."""
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"inductive_holdout: 'fraction' must lie in [0, 1], got {fraction}")
    ids = test.nonzero().view(-1)
    count = min(ids.numel(), max(1, round(fraction * ids.numel()))) if fraction > 0 else 0
    gen = torch.Generator().manual_seed(seed)
    pick = ids[torch.randperm(ids.numel(), generator=gen)[:count]]
    mask = torch.zeros_like(test, dtype=torch.bool)
    mask[pick] = True
    return mask


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

    @property
    def num_nodes(self) -> int:
        return self.data.num_nodes

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

    def train_batches(self, unlabelled: bool = True) -> Iterator[Batch]:
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
    split: Optional[int] = option(None, help="which of a dataset's given splits (default: run r "
                                  "takes split r mod their number, so --runs 10 covers the "
                                  "heterophilous sets' 10 splits)", min=0)
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
    inductive: float = option(0.0, help="node classification: hold this fraction of the test "
                              "nodes and every edge at them out of training (teachers "
                              "included) and score them at inference, as GLNN's inductive "
                              "setting (0.2 there); 0 is transductive", min=0.0, max=1.0)
    sdrf_iterations: int = option(0, help="node classification: rewire the graph with SDRF "
                                  "(curvature-based) for this many iterations before "
                                  "training, once per run, so teachers and students see the "
                                  "same graph (inductive: only the observed part); 0 is off",
                                  min=0)
    sdrf_tau: float = option(1.0, help="SDRF: softmax temperature of the added edge's draw",
                             above=0.0)
    sdrf_removal_bound: float = option(0.5, help="SDRF: the most curved edge is removed while "
                                       "its curvature is above this")
    fanouts: Optional[str] = option(None, help="node classification: train in mini-batches "
                                    "of sampled neighbourhoods, this many neighbours per node "
                                    "for each layer, input side first (e.g. 15,10; -1 takes "
                                    "all; one per layer of the deepest model); evaluation and "
                                    "teachers' outputs stay full-graph. Default: full graph")
    batch_nodes: int = option(1024, help="with --fanouts: training (seed) nodes per batch", min=1)
    replace: bool = option(False, help="with --fanouts: draw neighbours with replacement")
    device: str = option("cpu", help="cpu or cuda")

    def fanout_list(self) -> Optional[List[int]]:
        if self.fanouts is None:
            return None
        try:
            values = [int(v) for v in self.fanouts.split(",")]
        except ValueError:
            values = []
        if not values or any(v < -1 for v in values):
            raise ValueError(f"--fanouts must be comma-separated ints >= -1 (e.g. 15,10), got "
                             f"{self.fanouts!r}")
        return values


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
    fanouts = cfg.fanout_list()
    if isinstance(data, GraphDataset):
        if cfg.inductive > 0 or cfg.sdrf_iterations > 0 or fanouts is not None:
            raise ValueError("--inductive, --sdrf-iterations and --fanouts apply to node "
                             f"classification; {cfg.dataset!r} is a graph classification dataset")
        tasks = []
        for k, (train, test) in enumerate(stratified_kfold(data.y, cfg.folds, seed=seed)):
            train, val = stratified_holdout(data.y, train, cfg.val_fraction, seed * cfg.folds + k)
            tasks.append((f"fold{k}", GraphTask(data, train, val, test, batch_size=cfg.batch_size,
                                                readout=cfg.readout, device=cfg.device)))
        return tasks
    train, val, test = data.masks()
    x = node_features(data.x, cfg.features)
    kwargs = dict(multilabel=data.multilabel, metric=data.metric, name=data.name,
                  device=cfg.device)
    held = inductive_holdout(test, cfg.inductive, seed) if cfg.inductive > 0 else None
    graph, train_graph, transforms = rewire(data.graph, cfg, seed, held)
    if fanouts is not None:
        if held is not None:
            raise ValueError("--fanouts (mini-batches) and --inductive together are not "
                             "supported; use one of them")
        return [("", SampledNodeTask(x, data.y, graph, Split(train, val, test), fanouts=fanouts,
                                     batch_nodes=cfg.batch_nodes, replace=cfg.replace,
                                     transforms=transforms, **kwargs))]
    if held is not None:
        transforms["inductive"] = cfg.inductive
        return [("", InductiveNodeTask(x, data.y, graph, Split(train, val, test), held,
                                       train_graph=train_graph, transforms=transforms, **kwargs))]
    return [("", NodeTask(x, data.y, graph, Split(train, val, test), transforms=transforms,
                          **kwargs))]


def rewire(graph: Graph, cfg: DataConfig, seed: int, held_out: Optional[Tensor] = None
           ) -> Tuple[Graph, Optional[Graph], Dict]:
    """Apply the graph transforms of ``cfg`` (SDRF when ``cfg.sdrf_iterations > 0``, seeded
    with ``seed``): ``(graph, train_graph, transforms)``. With ``held_out`` nodes only the
    graph induced on the observed nodes is rewired: ``train_graph`` is that (renumbered) and
    ``graph`` the rewired observed edges plus every original edge at a held-out node, so
    nothing about the held-out part shapes the rewiring."""
    if cfg.sdrf_iterations <= 0:
        return graph, None, {}
    from ..graph_surgery import sdrf
    settings = {"iterations": cfg.sdrf_iterations, "tau": cfg.sdrf_tau,
                "removal_bound": cfg.sdrf_removal_bound}
    if held_out is None:
        res = sdrf(graph, seed=seed, **settings)
        return res.graph, None, {"sdrf": {**settings, "seed": seed, "added": len(res.added),
                                          "removed": len(res.removed)}}
    sub, ids = observed_subgraph(graph, ~held_out)
    res = sdrf(sub, seed=seed, **settings)
    ei = graph.edge_index
    at_held = held_out[ei[0]] | held_out[ei[1]]
    full = Graph.from_edge_index(torch.cat([ids[res.graph.edge_index], ei[:, at_held]], 1),
                                 graph.num_dst)
    return full, res.graph, {"sdrf": {**settings, "seed": seed, "added": len(res.added),
                                      "removed": len(res.removed)}}
