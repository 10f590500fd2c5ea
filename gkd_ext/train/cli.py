"""`python -m gkd_ext train`: run one method over several seeds and write its results."""
from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import asdict
from typing import Dict, List, Optional

import torch

from .. import functional
from .alignahead import PAIRINGS, AlignaheadConfig, train_alignahead
from .common import plot_curves, set_seed, summarize, versions, write_results
from .offline import (METHODS, KDConfig, ModelSpec, OptimConfig, Split, Task, get_teacher,
                      node_features, train_student)

ALL_METHODS = METHODS + ("alignahead",)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m gkd_ext train",
        description="Train a GNN with a knowledge-distillation method over several seeds. "
                    "Offline methods train (or load) a teacher first, then the student; "
                    "alignahead trains M students online with no teacher.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    g = p.add_argument_group("what to run")
    g.add_argument("--method", choices=ALL_METHODS, default="supervised",
                   help="supervised: the student alone; kd: logit KD; fitnet/at/lsp/gsp/gcrd: "
                        "CE + beta*aux (KD + beta*aux with --with-kd); alignahead: online "
                        "cross-layer KD among --num-students students")
    g.add_argument("--dataset", default="cora",
                   help="a dataset name (cora, citeseer, amazon-photo, coauthor-cs, chameleon, "
                        "synthetic-csbm, ...); all but the bundled cora and the generated "
                        "synthetic-csbm[-heterophilous] need --data-dir")
    g.add_argument("--data-dir", default=None,
                   help="folder with the layout of shared/data (shchur_npz/, planetoid/, ...); "
                        "defaults to $GKD_DATA")
    g.add_argument("--split", type=int, default=0, help="which of a dataset's fixed splits")
    g.add_argument("--lcc", action="store_true",
                   help="Shchur-format sets: keep only the largest connected component, as "
                        "Shchur et al. evaluate")
    g.add_argument("--runs", type=int, default=1, help="seeds 0..runs-1; mean ± std reported")
    g.add_argument("--device", default="cpu", help="cpu or cuda")
    g.add_argument("--impl", choices=("fused", "reference"), default="fused",
                   help="fused gkd_ext ops, or the unfused pure-PyTorch references (same math)")
    m = p.add_argument_group("models")
    m.add_argument("--teacher", default="gat", help="teacher architecture (gcn, gat, sage, gin, mlp)")
    m.add_argument("--teacher-hidden", type=int, default=64, help="teacher width per head")
    m.add_argument("--teacher-layers", type=int, default=3, help="teacher depth")
    m.add_argument("--teacher-heads", type=int, default=4, help="teacher attention heads (GAT)")
    m.add_argument("--teacher-ckpt", default=None,
                   help="teacher checkpoint path pattern ({seed} is replaced); loaded if it "
                        "exists, else the trained teacher is saved there")
    m.add_argument("--student", default="gcn", help="student architecture")
    m.add_argument("--student-hidden", type=int, default=64, help="student width per head")
    m.add_argument("--student-layers", type=int, default=2, help="student depth")
    m.add_argument("--student-heads", type=int, default=1, help="student attention heads (GAT)")
    m.add_argument("--dropout", type=float, default=0.5, help="dropout of every model")
    o = p.add_argument_group("optimisation")
    o.add_argument("--epochs", type=int, default=300)
    o.add_argument("--lr", type=float, default=0.01)
    o.add_argument("--weight-decay", type=float, default=5e-4)
    o.add_argument("--patience", type=int, default=100, help="early stopping on validation")
    o.add_argument("--teacher-epochs", type=int, default=None,
                   help="epochs for training the teacher (default --epochs); the teacher is "
                        "trained once per seed and is worth training to convergence")
    o.add_argument("--teacher-lr", type=float, default=None, help="the teacher's learning rate "
                   "(default --lr)")
    o.add_argument("--teacher-patience", type=int, default=None,
                   help="the teacher's early-stopping patience (default --patience)")
    k = p.add_argument_group("distillation")
    k.add_argument("--beta", type=float, default=None,
                   help="weight of the auxiliary loss (default per method: fitnet/at/lsp/gsp "
                        "100, gcrd 0.1; ten times smaller with --with-kd)")
    k.add_argument("--with-kd", action="store_true", help="KD + beta*aux instead of CE + beta*aux")
    k.add_argument("--alpha", type=float, default=0.9, help="logit-KD weight of the KL term")
    k.add_argument("--kd-temperature", type=float, default=4.0, help="logit-KD temperature T")
    k.add_argument("--lsp-kernel", default="rbf", help="LSP kernel (rbf, laplacian, cosine, poly, l2, linear)")
    k.add_argument("--gsp-kernel", default="cosine", help="GSP kernel (cosine, poly, l2, rbf)")
    k.add_argument("--gcrd-temperature", type=float, default=None,
                   help="G-CRD InfoNCE temperature (default 0.075; 0.05 with --with-kd)")
    k.add_argument("--max-samples", type=int, default=None,
                   help="GSP/G-CRD: random nodes per step, as the paper subsampled (default all)")
    k.add_argument("--layer-pairs", default="-1:-1",
                   help="student:teacher hidden-layer pairs to align, comma separated")
    a = p.add_argument_group("alignahead")
    a.add_argument("--num-students", type=int, default=2)
    a.add_argument("--pairing", choices=PAIRINGS, default="alignahead")
    a.add_argument("--a", type=float, default=1.0, help="weight of the LSP term; 0 = independent")
    a.add_argument("--sigma", type=float, default=100.0,
                   help="laplacian kernel width exp(-|a-b|_1/sigma); the paper's 100 suits its "
                        "feature scale (PPI), on row-normalised bag-of-words features neighbour "
                        "distances are ~1 and sigma=100 makes the term vanish")
    a.add_argument("--same-init", action="store_true", help="start all students from one copy")
    r = p.add_argument_group("output")
    r.add_argument("--out", default=None, help="results JSON path (default runs/<dataset>_<method>.json)")
    r.add_argument("--checkpoint-dir", default=None,
                   help="write a resumable checkpoint per seed here; rerunning resumes")
    r.add_argument("--plot", action="store_true", help="also save training curves (PNG)")
    r.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


def load_task(name: str, data_dir: Optional[str], split: int, seed: int, device,
              lcc: bool = False) -> Task:
    from ..data import NodeDataset, load_dataset, per_class_split
    data = load_dataset(name, data_dir=data_dir, split=split, seed=seed, lcc=lcc)
    if not isinstance(data, NodeDataset):
        raise ValueError(f"dataset {name!r} is a graph-classification dataset; these trainers do "
                         "node classification")
    masks = getattr(data, "train_mask", None)
    if masks is not None:
        sp = Split(data.train_mask, data.val_mask, data.test_mask)
    else:
        sp = Split(*per_class_split(data.y, 20, 30, seed=seed))
    x = node_features(data.x, normalize=not getattr(data, "multilabel", False))
    return Task(x, data.y, data.graph, sp, multilabel=getattr(data, "multilabel", False),
                device=torch.device(device))


def parse_pairs(text: str):
    try:
        return tuple(tuple(int(v) for v in pair.split(":")) for pair in text.split(","))
    except ValueError:
        raise SystemExit(f"--layer-pairs: expected 'student:teacher,...' integers, got {text!r}")


def run(args) -> Dict:
    if args.runs < 1:
        raise SystemExit("--runs must be >= 1")
    functional.set_impl(args.impl)
    teacher_spec = ModelSpec(args.teacher, args.teacher_hidden, args.teacher_layers,
                             args.teacher_heads, args.dropout)
    student_spec = ModelSpec(args.student, args.student_hidden, args.student_layers,
                             args.student_heads, args.dropout)
    optim = OptimConfig(args.epochs, args.lr, args.weight_decay, args.patience)
    teacher_optim = OptimConfig(args.teacher_epochs or args.epochs, args.teacher_lr or args.lr,
                                args.weight_decay,
                                args.teacher_patience or args.patience)
    per_seed: List[Dict] = []
    curves = {}
    t_start = time.time()
    for seed in range(args.runs):
        task = load_task(args.dataset, args.data_dir, args.split, seed, args.device, args.lcc)
        ckpt = (os.path.join(args.checkpoint_dir, f"{args.dataset}_{args.method}_seed{seed}.pt")
                if args.checkpoint_dir else None)
        t0 = time.time()
        if args.method == "alignahead":
            cfg = AlignaheadConfig(args.num_students, args.pairing, args.a, args.sigma,
                                  same_init=args.same_init)
            res = train_alignahead(task, student_spec, optim, cfg, seed=seed,
                                   progress=not args.no_progress, checkpoint=ckpt)
            for n, s in res["students"].items():
                curves[f"seed{seed} {n}"] = s.pop("history")
            entry = {"seed": seed, "test": res["mean_test"],
                     "students": res["students"], "epoch_time_ms": res["epoch_time_ms"]}
        else:
            kd_cfg = KDConfig(args.method, args.beta, args.with_kd, args.alpha, args.kd_temperature,
                              args.lsp_kernel, args.gsp_kernel, args.gcrd_temperature,
                              args.max_samples, parse_pairs(args.layer_pairs))
            entry = {"seed": seed}
            if args.method == "supervised":
                set_seed(seed)
                from .offline import train_model
                _, res = train_model(task, student_spec, optim, progress=not args.no_progress,
                                      desc=f"supervised {student_spec.arch}", checkpoint=ckpt)
            else:
                tpath = args.teacher_ckpt.format(seed=seed) if args.teacher_ckpt else None
                teacher, tres = get_teacher(task, teacher_spec, teacher_optim, path=tpath,
                                            progress=not args.no_progress, seed=seed)
                entry["teacher"] = {k: tres[k] for k in ("val", "test", "best_epoch", "epochs",
                                                         "epoch_time_ms", "train_time_s", "loaded")
                                    if k in tres}
                res = train_student(task, teacher, teacher_spec, student_spec, optim, kd_cfg,
                                    seed=seed, progress=not args.no_progress, checkpoint=ckpt)
            curves[f"seed{seed}"] = res.pop("history")
            entry.update({k: res[k] for k in ("val", "test", "best_epoch", "epoch_time_ms")})
            if "beta" in res:
                entry["beta"] = res["beta"]
        entry["wall_s"] = time.time() - t0
        per_seed.append(entry)
        print(f"seed {seed}: test {entry['test'] * 100:.2f} ({entry['wall_s']:.1f} s)", flush=True)
    tests = [e["test"] for e in per_seed]
    summary = summarize(tests)
    payload = {"config": vars(args), "teacher": asdict(teacher_spec), "student": asdict(student_spec),
               "per_seed": per_seed, "test": summary, "wall_s": time.time() - t_start,
               "versions": versions()}
    out = args.out or os.path.join("runs", f"{args.dataset}_{args.method}.json")
    write_results(out, payload)
    if args.plot:
        plot_curves(os.path.splitext(out)[0] + ".png", curves)
    print(f"{args.method} on {args.dataset}: test {summary['mean'] * 100:.2f} ± "
          f"{summary['std'] * 100:.2f} over {summary['n']} seed(s); results in {out}")
    return payload


def main(argv=None) -> None:
    args = build_parser().parse_args(argv)
    try:
        run(args)
    except (ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2)
