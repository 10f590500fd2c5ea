"""Run one method over seeds (and cross-validation folds), optionally tuning the optimiser on
validation, and write one results file: what the CLI and the experiment scripts call."""
from __future__ import annotations

import dataclasses
import itertools
import os
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple

from .. import distributed
from .common import summarize, versions, write_results
from .config import ModelSpec, OptimConfig
from .fit import Fitted, fit, obtain_teacher, save_model
from .method import Method, Role
from .tasks import DataConfig, build_tasks

# The validation search of --tune: learning rate x weight decay, the two settings whose best
# values differ most across dataset families (sparse bag-of-words citation graphs want strong
# weight decay, dense co-purchase graphs little).
TUNE_GRID = {"lr": (0.01, 0.005), "weight_decay": (5e-4, 5e-5, 0.0)}


def tune_candidates(optim: OptimConfig) -> List[OptimConfig]:
    keys = sorted(TUNE_GRID)
    return [dataclasses.replace(optim, **dict(zip(keys, values)))
            for values in itertools.product(*(TUNE_GRID[k] for k in keys))]


def _pattern(pattern: Optional[str], seed: int, run: str) -> Optional[str]:
    if pattern is None:
        return None
    return pattern.format(seed=seed, run=run or "all", fold=run)


def run_experiment(method: Method, data: DataConfig, optim: OptimConfig, *, runs: int = 1,
                   teacher_optim: Optional[OptimConfig] = None, teacher_ckpt: Optional[str] = None,
                   checkpoint_dir: Optional[str] = None, out: Optional[str] = None,
                   tune: bool = False, progress: bool = True, seeds: Optional[Sequence[int]] = None,
                   save_models: Optional[str] = None, log=print) -> Dict[str, Any]:
    """Fit ``method`` for seeds ``0..runs-1`` (or ``seeds``), on every task of each seed (one per
    node dataset, one per fold of a graph dataset), and write the results to ``out``.

    With ``tune``, each run tries every :data:`TUNE_GRID` setting of ``optim`` and keeps the
    one with the best validation metric (the teachers are trained once per run, before the
    search); the record says what was tried. ``teacher_ckpt`` and the checkpoint file names
    may use ``{seed}`` and ``{run}`` (the fold). With ``save_models`` (a folder), every trained
    model is saved there as a loadable teacher (``<dataset>_<method>_seed<seed>_<slot>.pt``;
    the cohort of an ensemble method also as ``..._ensemble.pt``).
    """
    t_start = time.time()
    main_rank = distributed.rank() == 0   # under torchrun, rank 0 logs and writes
    if not main_rank:
        log = _silent
    seeds = list(range(runs)) if seeds is None else list(seeds)
    teacher_slots = [n for n, s in method.participants().items() if s.role is Role.TEACHER]
    records = []
    for seed in seeds:
        for run, task in build_tasks(data, seed):
            label = f"seed {seed}" + (f" {run}" if run else "")
            ckpt = None
            if checkpoint_dir:
                ckpt = os.path.join(checkpoint_dir, f"{task.name}_{method.name}_seed{seed}"
                                    f"{'_' + run if run else ''}.pt")
            teachers = {n: _pattern(teacher_ckpt, seed, run) for n in teacher_slots
                        if teacher_ckpt}
            t0 = time.time()
            if tune:
                fitted = _tuned(method, task, optim, teacher_optim, teachers, seed, ckpt,
                                progress, label)
            else:
                fitted = fit(method, task, optim, seed=seed, teacher_optim=teacher_optim,
                             teachers=teachers, checkpoint=ckpt, progress=progress,
                             desc=f"{method.name} {label}")
            record = fitted.record
            record["run"] = run
            if save_models and main_rank:
                record["saved"] = _save(fitted, method, task, save_models,
                                        f"{task.name}_{method.name}_seed{seed}"
                                        f"{'_' + run if run else ''}")
            records.append(record)
            log(f"{label}: test {record['result']['test'] * 100:.2f} "
                f"({record['metric']}, {time.time() - t0:.1f} s)", flush=True)
    tests = [r["result"]["test"] for r in records]
    payload = {
        "method": method.name, "dataset": data.dataset, "metric": records[0]["metric"],
        "config": method.describe(), "data": dataclasses.asdict(data),
        "optim": dataclasses.asdict(optim),
        "teacher_optim": None if teacher_optim is None else dataclasses.asdict(teacher_optim),
        "tune": tune, "runs": records,
        "summary": {"test": summarize(tests), "val": summarize([r["result"]["val"] for r in records]),
                    "slots": {n: summarize([r["slots"][n]["test"] for r in records])
                              for n in records[0]["slots"]}},
        "wall_s": time.time() - t_start, "versions": versions()}
    if out and main_rank:
        write_results(out, payload)
    s = payload["summary"]["test"]
    log(f"{method.name} on {data.dataset}: test {s['mean'] * 100:.2f} ± {s['std'] * 100:.2f} "
        f"({payload['metric']}) over {s['n']} run(s)" + (f"; results in {out}" if out else ""))
    return payload


def _silent(*args, **kwargs) -> None:
    pass


def _save(fitted: Fitted, method: Method, task, folder: str, stem: str) -> Dict[str, str]:
    saved = {}
    trained = {n: s.spec for n, s in method.participants().items() if s.trained}
    for name, spec in trained.items():
        saved[name] = os.path.join(folder, f"{stem}_{name}.pt")
        save_model(saved[name], spec, fitted.models[name], task)
    if method.ensemble:
        members = [dataclasses.asdict(spec) for spec in trained.values()]
        spec = ModelSpec("ensemble", options={"members": members})
        model = task.build_model(spec)
        for member, name in zip(model.members, trained):
            member.load_state_dict(fitted.models[name].state_dict())
        saved["ensemble"] = os.path.join(folder, f"{stem}_ensemble.pt")
        save_model(saved["ensemble"], spec, model, task)
    return saved


def _tuned(method, task, optim, teacher_optim, teachers, seed, ckpt, progress, label):
    frozen = {}
    for name, slot in method.participants().items():
        if slot.role is Role.TEACHER:
            got = obtain_teacher(slot.spec, task, teacher_optim or optim, seed=seed,
                                 source=teachers.get(name), progress=progress)
            frozen[name] = got.models["model"]
    tried: List[Tuple[Dict[str, float], Dict[str, Any]]] = []
    for i, candidate in enumerate(tune_candidates(optim)):
        c_ckpt = None if ckpt is None else f"{os.path.splitext(ckpt)[0]}_tune{i}.pt"
        got = fit(method, task, candidate, seed=seed, teachers=frozen, checkpoint=c_ckpt,
                  progress=progress, desc=f"{method.name} {label} tune {i}")
        tried.append(({k: getattr(candidate, k) for k in TUNE_GRID}, got))
    best_setting, best = max(tried, key=lambda t: t[1].record["result"]["val"])
    best.record["tuned"] = {"chosen": best_setting,
                            "tried": [{**s, "val": f.record["result"]["val"],
                                       "test": f.record["result"]["test"]} for s, f in tried]}
    return best
