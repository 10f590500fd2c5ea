"""Scale check of mini-batch distillation on a graph of ogbn-products size (issue 15): a
synthetic contextual SBM with 2,449,029 nodes, ~123.7M directed edges, 100 features and 47
classes; a 2-layer GCN teacher trained in mini-batches, cached by full-graph (layer-wise)
inference; then one epoch of a GraphSAGE student under logit KD + LSP + G-CRD in mini-batches
of sampled neighbourhoods. Reports the time of each phase, the sampled edges per second, the
epoch time and the process's peak resident memory (experiments/results/products_scale.json).

    python experiments/products_scale.py                      # the full size (about 15 GB)
    python experiments/products_scale.py --scale 0.01         # a smoke test
    torchrun --standalone --nproc-per-node 2 experiments/products_scale.py --scale 0.02 \
        --distributed --out experiments/results/products_scale_0.02_2proc.json   # data-parallel

The KD + LSP + G-CRD student is a method of its own (registered here, one file, as a user
would add it): alpha*KD + (1-alpha)*CE + beta_lsp*LSP(last hidden layer, the sampled
neighbourhoods) + beta_crd*G-CRD(last hidden layer, the seeds).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import resource
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402

from gkd_ext import distributed  # noqa: E402
from gkd_ext.data.synthetic import csbm  # noqa: E402
from gkd_ext.losses import GCRDLoss, LogitKDLoss, LSPLoss  # noqa: E402
from gkd_ext.train import ModelSpec, OptimConfig, fit, make_method  # noqa: E402
from gkd_ext.train.common import versions, write_results  # noqa: E402
from gkd_ext.train.config import option  # noqa: E402
from gkd_ext.train.method import Method, Role, register_method  # noqa: E402
from gkd_ext.train.methods.offline import LogitKDConfig  # noqa: E402
from gkd_ext.train.tasks import SampledNodeTask, Split  # noqa: E402

PRODUCTS = {"nodes": 2_449_029, "edges": 123_718_280, "features": 100, "classes": 47}


@dataclasses.dataclass
class KDLSPCRDConfig(LogitKDConfig):
    beta_lsp: float = option(1.0, help="weight of LSP", min=0.0)
    beta_crd: float = option(0.1, help="weight of G-CRD", min=0.0)


@register_method
class KDLSPCRD(Method):
    name = "kd_lsp_gcrd"
    summary = "logit KD + LSP + G-CRD on the last hidden layer"
    Config = KDLSPCRDConfig
    models = {"teacher": ModelSpec("gcn", hidden=128, layers=2),
              "student": ModelSpec("sage", hidden=128, layers=2)}
    roles = {"teacher": Role.TEACHER, "student": Role.STUDENT}

    def setup(self, ctx):
        self.task = ctx.task
        self.kd = LogitKDLoss(self.config.kd_temperature)
        self.lsp = LSPLoss("rbf")
        self.crd = GCRDLoss(ctx.hidden_dims["student"][-1], ctx.hidden_dims["teacher"][-1], p=128)
        return {"student": self.crd}

    def step(self, out, batch, learners):
        s, t = out["student"], out["teacher"]
        a, cfg = self.config.alpha, self.config
        h_s, h_t = s.hidden[-1], t.hidden[-1].detach()
        seeds = batch.seed_rows if batch.seed_rows is not None else h_s.size(0)
        kd = a * self.kd(s.logits, t.logits.detach()) + (1 - a) * self.task.loss(s.logits, batch)
        lsp = self.lsp(h_s, h_t, graph=batch.graph)
        crd = self.crd(h_s[:seeds], h_t[:seeds])
        loss = kd + cfg.beta_lsp * lsp + cfg.beta_crd * crd
        return {"student": loss}, {"kd": kd.item(), "lsp": lsp.item(), "crd": crd.item()}


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20   # KiB -> GiB


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--scale", type=float, default=1.0, help="shrink nodes and edges alike")
    p.add_argument("--fanouts", default="15,10")
    p.add_argument("--batch-nodes", type=int, default=1024)
    p.add_argument("--teacher-epochs", type=int, default=3)
    p.add_argument("--homophily", type=float, default=0.8)
    p.add_argument("--feature-noise", type=float, default=1.0,
                   help="feature noise around the class means (larger: a harder task)")
    p.add_argument("--student-epochs", type=int, default=1)
    p.add_argument("--seed", type=int, default=0, help="the training seed (the graph is fixed)")
    p.add_argument("--distributed", action="store_true",
                   help="one of several processes started by torchrun (gloo): the seeds of each "
                        "batch are split over the ranks; rank 0 writes the record")
    p.add_argument("--out", default=os.path.join("experiments", "results", "products_scale.json"))
    args = p.parse_args()
    if args.distributed:
        distributed.init_from_env("cpu")
    main_rank = distributed.rank() == 0
    fanouts = [int(f) for f in args.fanouts.split(",")]
    n = max(PRODUCTS["classes"] * 50, int(PRODUCTS["nodes"] * args.scale))
    avg_degree = PRODUCTS["edges"] / PRODUCTS["nodes"]
    record = {"settings": {**vars(args), "nodes": n, "avg_degree": avg_degree,
                           "threads": torch.get_num_threads(),
                           "processes": distributed.world_size()}, "phases": {}}

    def phase(name, **values):
        record["phases"][name] = {**values, "peak_rss_gb": peak_rss_gb()}   # rank 0's
        if main_rank:
            print(name, json.dumps(record["phases"][name]), flush=True)
            write_results(args.out, {**record, "versions": versions()})

    t0 = time.perf_counter()
    data = csbm(n, PRODUCTS["classes"], PRODUCTS["features"], args.homophily, avg_degree, seed=0,
                feature_noise=args.feature_noise)
    task = SampledNodeTask(data.x, data.y, data.graph, Split(*data.masks()), fanouts=fanouts,
                           batch_nodes=args.batch_nodes, name="synthetic-products")
    phase("data", seconds=time.perf_counter() - t0, nodes=n, edges=data.graph.num_edges,
          train_nodes=int(data.train_mask.sum()))

    # Count what the sampler draws (fit does not know about it).
    stats = {"edges": 0, "seconds": 0.0, "batches": 0, "start": time.perf_counter()}
    sample = task.sampler.sample

    def counted(seeds, seed=None):
        t = time.perf_counter()
        blocks = sample(seeds, seed)
        stats["seconds"] += time.perf_counter() - t
        stats["edges"] += sum(g.num_edges for g in blocks.graphs)
        stats["batches"] += 1
        if stats["batches"] % 200 == 0 and main_rank:
            print(f"  batch {stats['batches']}: {time.perf_counter() - stats['start']:.0f} s since "
                  f"the phase began", flush=True)
        return blocks
    task.sampler.sample = counted

    method = make_method("kd_lsp_gcrd")
    t0 = time.perf_counter()
    teacher = fit(make_method("supervised", student=method.specs["teacher"]), task,
                  OptimConfig(epochs=args.teacher_epochs, patience=args.teacher_epochs),
                  seed=args.seed, progress=False)
    rec = teacher.record
    phase("teacher", seconds=time.perf_counter() - t0, test=rec["result"]["test"],
          epochs=rec["timings"]["epochs"], epoch_ms=rec["timings"]["epoch_time_ms"])

    stats.update(edges=0, seconds=0.0, batches=0, start=time.perf_counter())
    t0 = time.perf_counter()
    fitted = fit(method, task, OptimConfig(epochs=args.student_epochs, patience=args.student_epochs),
                 seed=args.seed, progress=main_rank,
                 teachers={"teacher": teacher.models["student"]})
    rec = fitted.record
    timings = rec["timings"]
    phase("student", seconds=time.perf_counter() - t0, test=rec["result"]["test"],
          epoch_s=timings["epoch_time_ms"] / 1e3, teacher_inference_s=timings["teacher_inference_s"],
          batches=stats["batches"], sampled_edges=stats["edges"],
          sampling_s=stats["seconds"],
          sampled_edges_per_s=stats["edges"] / max(stats["seconds"], 1e-9),
          history=rec["slots"]["student"]["history"])
    if main_rank:
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
