"""Offline KD (METHODS.md §1–3, §7): a trained teacher, then a student trained with
``CE + β·aux`` or ``KD + β·aux``, aux ∈ {none, FitNet, AT, LSP, GSP, G-CRD}."""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from typing import Dict, List, Optional, Tuple

import torch
from torch import nn

from ..data.features import node_features  # noqa: F401  (the trainers' input features)
from ..graph import Graph
from ..losses import ATLoss, FitNetLoss, GCRDLoss, GSPLoss, LogitKDLoss, LSPLoss
from ..nn import build_model
from .common import (Tracker, load_checkpoint, metric, run_loop, save_checkpoint, set_seed,
                     task_loss)

AUX_METHODS = ("fitnet", "at", "lsp", "gsp", "gcrd")
METHODS = ("supervised", "kd") + AUX_METHODS

# β of CE + β·aux. G-CRD's is the paper's (§3); the others are from the middle of the grid the
# G-CRD authors tuned over ({10, 100, 1000} without logit KD). With logit KD, β is 10x smaller.
DEFAULT_BETA = {"fitnet": 100.0, "at": 100.0, "lsp": 100.0, "gsp": 100.0, "gcrd": 0.1}


@dataclass
class ModelSpec:
    """Architecture of a teacher or student: what ``build_model`` takes."""
    arch: str = "gcn"
    hidden: int = 64
    layers: int = 2
    heads: int = 1
    dropout: float = 0.5

    def build(self, in_dim: int, out_dim: int) -> nn.Module:
        return build_model(self.arch, in_dim, self.hidden, out_dim, num_layers=self.layers,
                           heads=self.heads, dropout=self.dropout)


@dataclass
class OptimConfig:
    """Adam and early-stopping settings shared by teachers and students."""
    epochs: int = 300
    lr: float = 0.01
    weight_decay: float = 5e-4
    patience: int = 100


@dataclass
class Split:
    """Boolean train/validation/test node masks."""
    train: torch.Tensor
    val: torch.Tensor
    test: torch.Tensor


class Task:
    """One dataset ready for training: features, labels, the split and per-arch graphs."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, graph: Graph, split: Split,
                 multilabel: bool = False, device: torch.device = torch.device("cpu")):
        self.x, self.y, self.split = x.to(device), y.to(device), Split(
            split.train.to(device), split.val.to(device), split.test.to(device))
        self.graph = graph.to(device)
        self.multilabel = multilabel
        self.num_classes = y.size(1) if multilabel else int(y.max()) + 1
        self._graphs: Dict[str, Graph] = {}

    def graph_for(self, arch: str) -> Graph:
        if arch not in self._graphs:
            with torch.random.fork_rng():   # a throwaway model: only its prepare() is used
                self._graphs[arch] = build_model(arch, 1, 1, 1).prepare(self.graph)
        return self._graphs[arch]

    def metrics(self, logits: torch.Tensor) -> Dict[str, float]:
        s = self.split
        return {k: metric(logits, self.y, m, self.multilabel)
                for k, m in (("train", s.train), ("val", s.val), ("test", s.test))}


def train_model(task: Task, spec: ModelSpec, optim: OptimConfig, *, loss_fn=None,
                 extra_modules: Optional[nn.Module] = None, progress: bool = True,
                 desc: str = "", checkpoint: Optional[str] = None,
                 interrupt_after: Optional[int] = None) -> Tuple[nn.Module, Dict]:
    """Train ``spec`` on ``task``; ``loss_fn(logits, hidden) -> (loss, parts)`` replaces CE."""
    model = spec.build(task.x.size(1), task.num_classes).to(task.x.device)
    graph = task.graph_for(spec.arch)
    modules = {"model": model}
    params = list(model.parameters())
    if extra_modules is not None:
        extra_modules.to(task.x.device)
        modules["aux"] = extra_modules
        params += list(extra_modules.parameters())
    opt = torch.optim.Adam(params, lr=optim.lr, weight_decay=optim.weight_decay)
    trackers = {"model": Tracker(optim.patience)}

    def train_epoch(epoch):
        for m in modules.values():
            m.train()
        opt.zero_grad()
        logits, hidden = model(graph, task.x)
        if loss_fn is None:
            loss, parts = task_loss(logits, task.y, task.split.train, task.multilabel), {}
        else:
            loss, parts = loss_fn(logits, hidden)
        loss.backward()
        opt.step()
        return {"total": loss.item(), **parts}

    def evaluate():
        model.eval()
        with torch.no_grad():
            logits, _ = model(graph, task.x)
        return {"model": task.metrics(logits)}

    timing = run_loop(modules, {"model": opt}, trackers, optim.epochs, train_epoch, evaluate,
                      checkpoint=checkpoint, interrupt_after=interrupt_after, progress=progress,
                      desc=desc)
    t = trackers["model"]
    return model, {"val": t.best_val, "test": t.best_test, "best_epoch": t.best_epoch,
                   "history": t.history, **timing}


# ------------------------------------------------------------------ teacher
def get_teacher(task: Task, spec: ModelSpec, optim: OptimConfig, *, path: Optional[str] = None,
                progress: bool = True, seed: int = 0) -> Tuple[nn.Module, Dict]:
    """Load the teacher from ``path`` if it exists (checking that it was trained with this
    architecture and dimensions on this graph and training split), else train it and save it
    there. The split is part of the check: a teacher that saw other training labels would leak
    them into the student."""
    split = task.split.train.nonzero().view(-1)
    meta = {"spec": asdict(spec), "in_dim": task.x.size(1), "out_dim": task.num_classes,
            "data": [task.x.size(0), task.graph.num_edges, split.numel(), int(split.sum())]}
    if path and os.path.exists(path):
        state = load_checkpoint(path)
        if state.get("meta") != meta:
            raise ValueError(f"teacher checkpoint {path!r} was trained as {state.get('meta')}, "
                             f"but this run needs {meta}; pass another --teacher-ckpt or delete it")
        model = spec.build(task.x.size(1), task.num_classes).to(task.x.device)
        model.load_state_dict(state["model"])
        with torch.no_grad():
            model.eval()
            logits, _ = model(task.graph_for(spec.arch), task.x)
        return model, {**task.metrics(logits), "loaded": path}
    set_seed(seed)
    model, res = train_model(task, spec, optim, progress=progress, desc=f"teacher {spec.arch}")
    if path:
        save_checkpoint(path, {"meta": meta, "model": model.state_dict()})
    return model, res


# ------------------------------------------------------------------ student
@dataclass
class KDConfig:
    """What a student is trained with: the method, its weight β and the loss options."""
    method: str = "supervised"
    beta: Optional[float] = None        # None: DEFAULT_BETA (÷10 with logit KD)
    with_kd: bool = False               # KD + β·aux instead of CE + β·aux
    alpha: float = 0.9                  # logit KD mix
    kd_temperature: float = 4.0
    lsp_kernel: str = "rbf"
    gsp_kernel: str = "cosine"
    gcrd_temperature: Optional[float] = None   # None: 0.075 (0.05 with logit KD)
    max_samples: Optional[int] = None   # GSP/G-CRD node subsample per step (None: all nodes)
    layer_pairs: Tuple[Tuple[int, int], ...] = ((-1, -1),)   # (student layer, teacher layer)

    def resolved_beta(self) -> float:
        if self.beta is not None:
            return self.beta
        base = DEFAULT_BETA.get(self.method, 0.0)
        return base / 10 if self.with_kd else base


def make_aux(cfg: KDConfig, dims_s: List[int], dims_t: List[int], multilabel: bool):
    """The auxiliary loss of ``cfg.method`` for each layer pair, as one module (its trainable
    parts, FitNet projections and G-CRD heads, join the student's optimiser)."""
    mods = nn.ModuleList()
    for ls, lt in cfg.layer_pairs:
        ds, dt = dims_s[ls], dims_t[lt]
        if cfg.method == "fitnet":
            mods.append(FitNetLoss(ds, dt))
        elif cfg.method == "at":
            mods.append(ATLoss())
        elif cfg.method == "lsp":
            mods.append(LSPLoss(cfg.lsp_kernel, "node_mean"))
        elif cfg.method == "gsp":
            mods.append(GSPLoss(cfg.gsp_kernel, max_samples=cfg.max_samples))
        elif cfg.method == "gcrd":
            tau = cfg.gcrd_temperature or (0.05 if cfg.with_kd else 0.075)
            mods.append(GCRDLoss(ds, dt, temperature=tau, max_samples=cfg.max_samples))
        else:
            raise ValueError(f"unknown auxiliary method {cfg.method!r}")
    return mods


def train_student(task: Task, teacher: nn.Module, teacher_spec: ModelSpec, student_spec: ModelSpec,
                  optim: OptimConfig, cfg: KDConfig, *, seed: int = 0, progress: bool = True,
                  checkpoint: Optional[str] = None, interrupt_after: Optional[int] = None) -> Dict:
    """Train a student with ``cfg.method`` from a fixed teacher; returns its best-val metrics."""
    if cfg.method not in METHODS:
        raise ValueError(f"unknown method {cfg.method!r}; choose from {METHODS}")
    teacher.eval()
    with torch.no_grad():
        z_t, h_t = teacher(task.graph_for(teacher_spec.arch), task.x)
    set_seed(seed)
    probe = student_spec.build(task.x.size(1), task.num_classes).to(task.x.device)
    with torch.no_grad():
        probe.eval()
        _, h_probe = probe(task.graph_for(student_spec.arch), task.x)
    dims_s, dims_t = [h.size(1) for h in h_probe], [h.size(1) for h in h_t]
    del probe
    if cfg.method in AUX_METHODS:
        for ls, lt in cfg.layer_pairs:
            if not (-len(dims_s) <= ls < len(dims_s) and -len(dims_t) <= lt < len(dims_t)):
                raise ValueError(f"layer pair ({ls}, {lt}) out of range: the student has "
                                 f"{len(dims_s)} hidden layers, the teacher {len(dims_t)}")
    set_seed(seed)
    use_kd = cfg.method == "kd" or cfg.with_kd
    kd = LogitKDLoss(cfg.alpha, cfg.kd_temperature, multilabel=task.multilabel) if use_kd else None
    aux = make_aux(cfg, dims_s, dims_t, task.multilabel) if cfg.method in AUX_METHODS else None
    beta = cfg.resolved_beta()
    split = task.split

    def loss_fn(logits, hidden):
        parts = {}
        if kd is not None:
            loss = kd(logits, z_t, task.y, split.train)
        else:
            loss = task_loss(logits, task.y, split.train, task.multilabel)
        parts["base"] = loss.item()
        if aux is not None:
            a = 0.0
            for mod, (ls, lt) in zip(aux, cfg.layer_pairs):
                if isinstance(mod, LSPLoss):
                    a = a + mod(task.graph, hidden[ls], h_t[lt])
                else:
                    a = a + mod(hidden[ls], h_t[lt])
            parts["aux"] = float(a.detach()) if torch.is_tensor(a) else a
            loss = loss + beta * a
        return loss, parts

    _, res = train_model(task, student_spec, optim, loss_fn=loss_fn, extra_modules=aux,
                          progress=progress, desc=f"{cfg.method} student {student_spec.arch}",
                          checkpoint=checkpoint, interrupt_after=interrupt_after)
    res["beta"] = beta
    return res
