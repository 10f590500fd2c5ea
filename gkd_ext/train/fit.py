"""`fit`: the one training loop every method runs on (see :mod:`gkd_ext.train.method`)."""
from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import os
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Dict, Hashable, List, Optional, Union

import torch
from torch import nn

from .. import distributed
from ..nn.base import WholeGraphRows
from .common import (Interrupted, git_commit, load_checkpoint, rng_state, save_checkpoint,
                     set_rng_state, set_seed, versions)
from .config import ModelSpec, OptimConfig, validate
from .method import JOINT, Method, Output, Role, Setup, make_method
from .tasks import FULL_GRAPH_KEY, Batch, Task, run_model

Tensor = torch.Tensor
TeacherSource = Union[nn.Module, str, None]


# ------------------------------------------------------------------ early stopping and history
@dataclass
class Tracker:
    """Per-epoch history of one slot and its metrics at the best validation epoch."""
    patience: int
    best_val: float = -float("inf")
    best_test: float = float("nan")
    best_train: float = float("nan")
    best_epoch: int = -1
    history: List[Dict[str, float]] = field(default_factory=list)

    def update(self, epoch: int, values: Dict[str, float]) -> bool:
        """Record an epoch; True when this slot has not improved for ``patience`` epochs."""
        self.history.append({"epoch": epoch, **values})
        if values["val"] > self.best_val:
            self.best_val, self.best_test, self.best_epoch = values["val"], values["test"], epoch
            self.best_train = values.get("train", float("nan"))
        return epoch - self.best_epoch >= self.patience

    def summary(self) -> Dict[str, Any]:
        """The metrics at the best validation epoch, that epoch's whole history entry (losses
        and the method's diagnostics) as ``at_best``, and the history."""
        at_best = next((h for h in self.history if h["epoch"] == self.best_epoch), {})
        return {"val": self.best_val, "test": self.best_test, "train": self.best_train,
                "best_epoch": self.best_epoch, "at_best": at_best, "history": self.history}


@dataclass
class Fitted:
    """What :func:`fit` returns: the result record (JSON-ready) and the trained models, each
    holding the weights of its best validation epoch (teachers included)."""
    record: Dict[str, Any]
    models: Dict[str, nn.Module]


def _jsonable(obj: Any) -> Any:
    return json.loads(json.dumps(obj, default=str))


# ------------------------------------------------------------------ teachers
# A teacher spec with this architecture takes the architecture a saved model records.
SAVED = "saved"


def _teacher_meta(spec: ModelSpec, task: Task) -> Dict[str, Any]:
    # The split is part of it: a teacher that saw other training labels would leak them.
    return _jsonable({"spec": dataclasses.asdict(spec), "task": task.signature()})


def save_model(path: str, spec: ModelSpec, model: nn.Module, task: Task) -> None:
    """Save ``model`` so that it can be loaded as a teacher for ``task``: its weights, the
    spec that builds it and the data and split it was trained on."""
    save_checkpoint(path, {"meta": _teacher_meta(spec, task), "model": model.state_dict()})


def obtain_teacher(spec: ModelSpec, task: Task, optim: OptimConfig, *, seed: int = 0,
                   source: TeacherSource = None, progress: bool = True,
                   desc: str = "teacher") -> Fitted:
    """A frozen teacher for ``task``: ``source`` itself when it is a model, else loaded from
    the checkpoint path ``source`` when that exists (checking it was trained as ``spec`` on
    this data and split; ``spec.arch == "saved"`` takes the spec the checkpoint records, e.g.
    a model or an ensemble saved by ``--save-models``), else trained from scratch with the
    supervised method (seeded with ``seed``) and saved to ``source`` when it is a path."""
    if isinstance(source, nn.Module):
        model = source.to(task.device).eval()
        return Fitted({"source": "given", **_evaluate_one(model, task)}, {"model": model})
    if spec.arch == SAVED and not (isinstance(source, str) and os.path.exists(source)):
        raise ValueError(f"teacher architecture {SAVED!r} loads a saved model, but the teacher "
                         f"checkpoint {source!r} does not exist")
    if isinstance(source, str) and os.path.exists(source):
        state = load_checkpoint(source, keys=("meta", "model"))
        if spec.arch == SAVED and isinstance(state.get("meta"), dict):
            spec = ModelSpec(**state["meta"]["spec"])
        meta = _teacher_meta(spec, task)
        if _jsonable(state.get("meta")) != meta:
            raise ValueError(f"teacher checkpoint {source!r} was trained as {state.get('meta')}, "
                             f"but this run needs {meta}; pass another teacher checkpoint or "
                             "delete it")
        model = task.build_model(spec).to(task.device)
        with _damaged(source):
            model.load_state_dict(state["model"])
        model.eval()
        return Fitted({"source": f"loaded {source}", "spec": dataclasses.asdict(spec),
                       **_evaluate_one(model, task)}, {"model": model})
    fitted = fit(make_method("supervised", student=spec), task, optim, seed=seed,
                 progress=progress, desc=desc)
    model = fitted.models["student"].eval()
    if isinstance(source, str) and distributed.rank() == 0:
        save_model(source, spec, model, task)
    rec = fitted.record
    return Fitted({"source": "trained", **{k: rec["slots"]["student"][k] for k in
                                          ("val", "test", "train", "best_epoch", "history")},
                   "timings": rec["timings"]}, {"model": model})


# ------------------------------------------------------------------ running models on batches
class Runner:
    """Runs models on batches, preparing each batch's inputs once per kind of model where the
    batch recurs (``batch.key``), and caching frozen models' outputs over the whole data."""

    def __init__(self, task: Task):
        self.task = task
        self._prepared: Dict[Any, Any] = {}

    def inputs(self, model: nn.Module, batch: Batch):
        if batch.blocks is not None:
            if getattr(model, "row_wise", False):
                whole = self._prepare(model, FULL_GRAPH_KEY, self.task.graph)
                return WholeGraphRows(whole, self.task.x, batch.node_ids)
            return model.prepare_blocks(batch.blocks)
        if batch.key is None:
            return model.prepare(batch.graph)
        return self._prepare(model, batch.key, batch.graph)

    def _prepare(self, model: nn.Module, batch_key: Hashable, graph):
        key = (batch_key, model.prepare_key())
        if key not in self._prepared:
            self._prepared[key] = model.prepare(graph)
        return self._prepared[key]

    def forward(self, model: nn.Module, batch: Batch, call: Optional[nn.Module] = None) -> Output:
        """``model``'s outputs on ``batch``; ``call`` runs the forward instead of ``model``
        itself (its DistributedDataParallel wrapper)."""
        logits, hidden = run_model(call or model, self.inputs(model, batch), batch)
        return Output(logits, list(hidden))

    @torch.no_grad()
    def predict(self, model: nn.Module, batches=None) -> Output:
        """``model``'s outputs over ``batches`` (default: the task's evaluation batches, which
        cover the whole data), rows in global order; rows no batch covers are NaN (eval
        mode)."""
        model.eval()
        parts, target_ids, node_ids = [], [], []
        for batch in (self.task.eval_batches() if batches is None else batches):
            parts.append(self.forward(model, batch))
            target_ids.append(batch.target_ids)
            node_ids.append(batch.node_ids)
        if len(parts) == 1 and target_ids[0] is None:
            return parts[0]
        logits = _in_order(torch.cat([p.logits for p in parts]), torch.cat(target_ids),
                           self.task.num_targets)
        nodes = torch.cat(node_ids)
        hidden = [_in_order(torch.cat([p.hidden[i] for p in parts]), nodes, self.task.num_nodes)
                  for i in range(len(parts[0].hidden))]
        return Output(logits, hidden)


def _ddp(model: nn.Module) -> nn.Module:
    from torch.nn.parallel import DistributedDataParallel
    device = next(model.parameters()).device
    return DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None)


# Frozen outputs on the CPU larger than this (bytes; env GKD_MAP_TEACHER_BYTES) move to
# memory-mapped files (in GKD_CACHE_DIR, default the system temp folder): file-backed pages the
# OS can drop and read again, where anonymous memory on a machine without swap could not be.
MAP_BYTES = int(os.environ.get("GKD_MAP_TEACHER_BYTES", 2 ** 32))


def mapped_if_large(out: Output) -> Output:
    """``out`` with its tensors memory-mapped when they are on the CPU and together exceed
    :data:`MAP_BYTES`; the files are unlinked at once (the mapping keeps them until freed)."""
    tensors = [out.logits] + list(out.hidden)
    size = sum(t.numel() * t.element_size() for t in tensors)
    if size <= MAP_BYTES or any(t.device.type != "cpu" for t in tensors):
        return out
    import tempfile
    import numpy as np

    def to_file(t: Tensor) -> Tensor:
        fd, path = tempfile.mkstemp(suffix=".gkd-teacher", dir=os.environ.get("GKD_CACHE_DIR"))
        os.close(fd)
        try:
            values = t.detach().contiguous().numpy()
            arr = np.memmap(path, dtype=values.dtype, mode="w+", shape=values.shape)
            arr[...] = values
            arr.flush()
        finally:
            os.unlink(path)
        return torch.from_numpy(arr)
    return Output(to_file(out.logits), [to_file(h) for h in out.hidden])


def _in_order(rows: Tensor, ids: Tensor, total: int) -> Tensor:
    out = rows.new_full((total,) + tuple(rows.shape[1:]), float("nan"))
    out[ids] = rows
    return out


def _gather(out: Output, batch: Batch) -> Output:
    """The rows of whole-data outputs that ``batch`` covers."""
    if batch.target_ids is None and batch.node_ids is None:
        return out
    logits = out.logits if batch.target_ids is None else out.logits[batch.target_ids]
    hidden = out.hidden if batch.node_ids is None else [h[batch.node_ids] for h in out.hidden]
    return Output(logits, hidden)


def _evaluate_one(model: nn.Module, task: Task) -> Dict[str, float]:
    return task.score(Runner(task).predict(model).logits)


# ------------------------------------------------------------------ the loop
def fit(method: Method, task: Task, optim: Optional[OptimConfig] = None, *, seed: int = 0,
        teacher_optim: Optional[OptimConfig] = None,
        teachers: Optional[Dict[str, TeacherSource]] = None,
        checkpoint: Optional[str] = None, progress: bool = True, desc: Optional[str] = None,
        interrupt_after: Optional[int] = None) -> Fitted:
    """Train ``method`` on ``task`` and return its :class:`Fitted` record and models.

    - Frozen teachers come from ``teachers[slot]`` (a model, or a checkpoint path loaded if
      present, else written after training) or are trained here with the supervised method
      and ``teacher_optim`` (default ``optim``); their outputs are computed once and cached.
    - Every trained slot gets its model (seeded with ``seed``), the trainable loss parts the
      method's ``setup`` gives it, and one Adam optimiser (a part shared by every learner gets
      its own, stepped with each learner); its validation metric is tracked
      each epoch and it stops improving after ``optim.patience`` epochs; training ends when
      every slot has stopped (or at ``optim.epochs``); each model ends with the weights of its
      best validation epoch.
    - With ``checkpoint``, the whole state is written atomically after every epoch, and a rerun
      resumes from it and ends exactly as an uninterrupted run; a checkpoint of a finished run
      returns its recorded result; one written with other settings is refused, naming them.

    The record: ``{method, seed, task, metric, config, optim, slots: {name: {role, spec, val,
    test, best_epoch, history, ...}}, combined: {name: ...} (the method's combined predictions,
    e.g. an ensemble), result: {val, test}, timings, versions, commit}``.
    """
    wall0 = time.perf_counter()
    optim = validate(optim or OptimConfig())
    teacher_optim = validate(teacher_optim or optim)
    teachers = dict(teachers or {})
    slots = method.participants()
    unknown = sorted(set(teachers) - {n for n, s in slots.items() if s.role is Role.TEACHER})
    if unknown:
        raise ValueError(f"fit: 'teachers' names {unknown}, but the teacher slots of method "
                         f"{method.name!r} are {[n for n, s in slots.items() if not s.trained]}")
    runner = Runner(task)

    # Frozen teachers: trained or loaded, then run once over the data.
    frozen: Dict[str, nn.Module] = {}
    frozen_records: Dict[str, Dict[str, Any]] = {}
    t0 = time.perf_counter()
    for name, slot in slots.items():
        if not slot.trained:
            got = obtain_teacher(slot.spec, task, teacher_optim, seed=seed,
                                 source=teachers.get(name), progress=progress, desc=f"{name} "
                                 f"{slot.spec.arch}")
            frozen[name], frozen_records[name] = got.models["model"], got.record
    teacher_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    # Frozen outputs come from the batches the task lets training see (the whole data, or in
    # an inductive task the observed part only, so no held-out node reaches a teacher).
    # A runner of their own: what the teachers' inputs took (a normalised copy of the graph,
    # GBs at ogbn-products size) is freed once their outputs are cached.
    cached = {name: mapped_if_large(Runner(task).predict(model, task.frozen_batches()))
              for name, model in frozen.items()}
    cache_s = time.perf_counter() - t0

    # Trained slots: models, the method's loss parts, one optimiser each.
    set_seed(seed)
    trained = [n for n, s in slots.items() if s.trained]
    models = {n: task.build_model(slots[n].spec).to(task.device) for n in trained}
    dims = {n: m.hidden_dims for n, m in {**frozen, **models}.items()}
    parts = {n: p.to(task.device) for n, p in
             method.setup(Setup(task, models, dims)).items()}
    # A part named after a trained slot joins its optimiser; any other part (a unit every
    # learner's loss trains, such as GML's weighting unit) has its own, stepped at every step.
    shared = [n for n in parts if n not in models]
    optimizers = {n: torch.optim.Adam((list(models[n].parameters()) if n in models else []) +
                                      (list(parts[n].parameters()) if n in parts else []),
                                      lr=optim.lr, weight_decay=optim.weight_decay)
                  for n in trained + shared}
    # Data-parallel under an initialised process group (torchrun): each trained model behind
    # DistributedDataParallel (gradients averaged during the backward), the loss parts'
    # gradients averaged explicitly; only rank 0 writes checkpoints and shows progress.
    parallel = distributed.active()
    call = {n: _ddp(models[n]) if parallel else models[n] for n in trained}
    main_rank = distributed.rank() == 0
    progress = progress and main_rank
    trackers = {n: Tracker(optim.patience) for n in trained}
    combined_trackers: Dict[str, Tracker] = {}
    settings = _jsonable({"method": method.describe(), "optim": dataclasses.asdict(optim),
                          "seed": seed, "task": task.describe(),
                          "teachers": {n: _teacher_meta(slots[n].spec, task) for n in frozen}})

    def train_epoch() -> Dict[str, float]:
        sums: Dict[str, float] = defaultdict(float)
        count = 0
        for batch in task.train_batches(unlabelled=method.reads_unlabelled):
            fixed = {n: _gather(out, batch) for n, out in cached.items()}
            if method.schedule == JOINT:
                for m in list(models.values()) + list(parts.values()):
                    m.train()
                for opt in optimizers.values():
                    opt.zero_grad()
                out = {**fixed, **{n: runner.forward(models[n], batch, call[n]) for n in trained}}
                losses, logs = method.step(out, batch, trained)
                # Each learner's loss reaches only its own parameters (the method detaches
                # what it takes from the others), so one backward of the sum is every step.
                sum(losses.values()).backward()
                if parallel:
                    distributed.average_gradients(p for part in parts.values()
                                                  for p in part.parameters())
                for opt in optimizers.values():
                    opt.step()
            else:
                losses, logs = {}, {}
                for learner in trained:
                    out = dict(fixed)
                    if method.uses_peers():
                        with torch.no_grad():
                            for n in trained:
                                if n != learner:
                                    models[n].eval()
                                    out[n] = runner.forward(models[n], batch)
                    models[learner].train()
                    for n in [learner] + shared:
                        if n in parts:
                            parts[n].train()
                    for n in [learner] + shared:
                        optimizers[n].zero_grad()
                    out[learner] = runner.forward(models[learner], batch, call[learner])
                    step_losses, step_logs = method.step(out, batch, [learner])
                    step_losses[learner].backward()
                    if parallel:
                        distributed.average_gradients(p for n in [learner] + shared if n in parts
                                                      for p in parts[n].parameters())
                    for n in [learner] + shared:
                        optimizers[n].step()
                    losses[learner] = step_losses[learner]
                    logs.update(step_logs)
            for n, loss in losses.items():
                sums[f"loss_{n}"] += loss.item()
            for k, v in logs.items():
                sums[k] += float(v)
            count += 1
        return {k: v / max(count, 1) for k, v in sums.items()}

    def evaluate():
        """Metrics of every trained slot and of the method's combined predictions (an
        ensemble), plus the method's diagnostics, from eval-mode outputs."""
        for p in parts.values():
            p.eval()
        with torch.no_grad():
            logits = {n: runner.predict(models[n]).logits for n in trained}
            combined = method.combine(logits)
            diagnostics = method.diagnostics(logits)
        scores = {n: task.score(z) for n, z in {**logits, **combined}.items()}
        return scores, diagnostics

    start, train_time, best = 0, 0.0, {}
    finished = False
    if parallel:
        distributed.barrier()   # rank 0 has finished writing the checkpoint the ranks resume from
    if checkpoint and os.path.exists(checkpoint):
        state = load_checkpoint(checkpoint, keys=CHECKPOINT_KEYS)
        _check_settings(checkpoint, state.get("settings"), settings)
        with _damaged(checkpoint):
            start, train_time, finished, best = _restore(state, models, optimizers, parts,
                                                         shared, trackers, combined_trackers)

    from tqdm.auto import tqdm
    bar = tqdm(range(start, optim.epochs), desc=desc or method.name,
               disable=not progress or finished, dynamic_ncols=True, initial=start,
               total=optim.epochs)
    epoch = start - 1
    for epoch in ([] if finished else bar):
        if interrupt_after is not None and epoch >= interrupt_after:
            raise Interrupted(f"stopped before epoch {epoch}")
        t_epoch = time.perf_counter()
        logs = train_epoch()
        train_time += time.perf_counter() - t_epoch
        stop = True
        scores, diagnostics = evaluate()
        for n, values in scores.items():
            if n not in trackers:   # combined predictions: tracked, never a reason to go on
                combined_trackers.setdefault(n, Tracker(optim.patience)).update(
                    epoch, {**values, **diagnostics})
                continue
            before = trackers[n].best_epoch
            stop &= trackers[n].update(epoch, {**values, **logs, **diagnostics})
            if trackers[n].best_epoch != before:
                best[n] = copy.deepcopy(models[n].state_dict())
        bar.set_postfix({n: f"{t.best_test:.3f}" for n, t in trackers.items()}, refresh=False)
        finished = stop or epoch + 1 >= optim.epochs
        if checkpoint and main_rank:
            save_checkpoint(checkpoint, {
                "settings": settings, "finished": finished, "epoch": epoch,
                "train_time": train_time, "rng": rng_state(), "best": best,
                "modules": {n: m.state_dict() for n, m in models.items()},
                "parts": {n: p.state_dict() for n, p in parts.items()},
                "optimizers": {n: o.state_dict() for n, o in optimizers.items()},
                "trackers": {n: dataclasses.asdict(t) for n, t in trackers.items()},
                "combined": {n: dataclasses.asdict(t) for n, t in combined_trackers.items()}})
        if stop:
            break
    bar.close()
    for n, weights in best.items():
        models[n].load_state_dict(weights)
    for m in models.values():
        m.eval()

    epochs = max((t.history[-1]["epoch"] + 1 for t in trackers.values() if t.history), default=0)
    slot_records: Dict[str, Any] = {}
    for n, slot in slots.items():
        rec = {"role": slot.role.value, "spec": dataclasses.asdict(slot.spec)}
        rec.update(trackers[n].summary() if slot.trained else frozen_records[n])
        slot_records[n] = rec
    reported = method.reported()
    record = {
        "method": method.name, "seed": seed, "task": task.describe(), "metric": task.metric,
        "config": method.describe(), "optim": dataclasses.asdict(optim),
        "slots": slot_records,
        "combined": {n: t.summary() for n, t in combined_trackers.items()},
        "result": {k: sum(slot_records[n][k] for n in reported) / len(reported)
                   for k in ("val", "test")},
        "timings": {"epochs": epochs, "train_time_s": train_time,
                    "epoch_time_ms": 1e3 * train_time / max(epochs, 1),
                    "teacher_s": teacher_s, "teacher_inference_s": cache_s,
                    "wall_s": time.perf_counter() - wall0},
        "versions": versions(), "commit": git_commit()}
    return Fitted(_jsonable(record), {**frozen, **models})


CHECKPOINT_KEYS = ("settings", "finished", "epoch", "train_time", "rng", "best", "modules",
                   "parts", "optimizers", "trackers", "combined")


def _restore(state, models, optimizers, parts, shared, trackers, combined_trackers):
    """Load a run checkpoint's state into the run's objects; returns (start epoch, train time,
    finished, best weights)."""
    for n in models:
        models[n].load_state_dict(state["modules"][n])
        optimizers[n].load_state_dict(state["optimizers"][n])
        trackers[n] = Tracker(**state["trackers"][n])
    combined_trackers.clear()
    combined_trackers.update({n: Tracker(**t) for n, t in state["combined"].items()})
    for n, p in parts.items():
        p.load_state_dict(state["parts"][n])
    for n in shared:
        optimizers[n].load_state_dict(state["optimizers"][n])
    set_rng_state(state["rng"])
    return state["epoch"] + 1, state["train_time"], bool(state["finished"]), state["best"]


@contextlib.contextmanager
def _damaged(path: str):
    """Turn a state that does not fit the models (a tampered or mixed-up file whose settings
    still match) into a ValueError naming the file."""
    try:
        yield
    except (KeyError, TypeError, RuntimeError, ValueError, IndexError) as exc:
        raise ValueError(f"checkpoint {path!r} does not fit this run's models ({type(exc).__name__}: "
                         f"{str(exc).splitlines()[0] if str(exc) else exc!r}); delete it to "
                         "start afresh") from None


def _check_settings(path: str, saved: Optional[Dict[str, Any]], now: Dict[str, Any]) -> None:
    if saved is None:
        raise ValueError(f"checkpoint {path!r} records no run settings (written by an older "
                         "version); delete it to train afresh")
    if saved == now:
        return
    diffs: List[str] = []

    def walk(a, b, where):
        if isinstance(a, dict) and isinstance(b, dict):
            for k in sorted(set(a) | set(b)):
                walk(a.get(k), b.get(k), f"{where}.{k}" if where else k)
        elif a != b:
            diffs.append(f"{where}: checkpoint {a!r}, this run {b!r}")
    walk(saved, now, "")
    raise ValueError(f"checkpoint {path!r} was written by a run with other settings ("
                     + "; ".join(diffs[:8]) + ("; ..." if len(diffs) > 8 else "")
                     + "); delete it or use another checkpoint path to train afresh")
