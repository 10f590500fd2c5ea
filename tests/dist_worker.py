"""One rank of a multi-process test case (tests/test_distributed.py starts one process per
rank with gloo on the CPU and compares what the ranks save with the single-process result).

    python tests/dist_worker.py RANK WORLD INIT_FILE OUT_DIR CASES_JSON

CASES_JSON is a list of ``[name, {key: value}]``: the cases run in one process group, one
after the other (starting processes is the slow part), and rank r saves
``OUT_DIR/rank<r>.pt``: one result per case, in order.
"""
from __future__ import annotations

import json
import os
import sys

import torch
import torch.distributed as dist

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import gkd_ext  # noqa: E402
import gkd_ext.distributed as gdist  # noqa: E402


def shard(counts, rank):
    """The rows rank ``rank`` holds when rank r holds ``counts[r]`` consecutive rows."""
    start = sum(counts[:rank])
    return slice(start, start + counts[rank])


def global_embeddings(n, d, seed):
    g = torch.Generator().manual_seed(seed)
    z_s = torch.nn.functional.normalize(torch.randn(n, d, generator=g, dtype=torch.float64), dim=1)
    z_t = torch.nn.functional.normalize(torch.randn(n, d, generator=g, dtype=torch.float64), dim=1)
    return z_s, z_t


def case_infonce(rank, world, args):
    """The distributed InfoNCE on this rank's rows: loss, and the gradients of its rows."""
    counts = list(args["counts"])
    z_s, z_t = global_embeddings(sum(counts), args.get("d", 16), args.get("seed", 0))
    rows = shard(counts, rank)
    zs, zt = z_s[rows].clone().requires_grad_(), z_t[rows].clone().requires_grad_()
    with gkd_ext.use_impl(args.get("impl", "fused")):
        loss = gdist.contrastive_loss(zs, zt, args.get("tau", 0.1),
                                      symmetric=args.get("symmetric", False))
    loss.backward()
    # A rank without rows has no gradient to receive (None); compare it as an empty one.
    empty = torch.zeros_like(zs) if zs.size(0) == 0 else None
    return {"loss": loss.detach(), "grad_s": zs.grad if zs.grad is not None else empty,
            "grad_t": zt.grad if zt.grad is not None else empty}


def case_gsp(rank, world, args):
    """The distributed cosine GSP loss on this rank's rows (student and teacher of different
    widths, both trainable as in online KD): loss, and the gradients of its rows."""
    counts = list(args["counts"])
    g = torch.Generator().manual_seed(args.get("seed", 0))
    h_s = torch.randn(sum(counts), 8, generator=g, dtype=torch.float64)
    h_t = torch.randn(sum(counts), 12, generator=g, dtype=torch.float64)
    rows = shard(counts, rank)
    hs, ht = h_s[rows].clone().requires_grad_(), h_t[rows].clone().requires_grad_()
    loss = gdist.gsp_loss(hs, ht)
    loss.backward()
    return {"loss": loss.detach(), "grad_s": hs.grad, "grad_t": ht.grad}


def sampled_task(n=60, classes=3, feats=8, seed=0, batch_nodes=20):
    """A small loop-free graph as a mini-batch task (2 sampled hops of 4)."""
    from gkd_ext.train.tasks import SampledNodeTask, Split
    g = torch.Generator().manual_seed(seed)
    ei = torch.randint(0, n, (2, 5 * n), generator=g)
    ei = ei[:, ei[0] != ei[1]]
    graph = gkd_ext.Graph.from_edge_index(torch.cat([ei, ei.flip(0)], 1), n)
    y = torch.randint(0, classes, (n,), generator=g)
    x = torch.randn(n, feats, generator=g) + torch.nn.functional.one_hot(y, feats).float()
    idx = torch.randperm(n, generator=g)
    masks = [torch.zeros(n, dtype=torch.bool) for _ in range(3)]
    masks[0][idx[:20]], masks[1][idx[20:35]], masks[2][idx[35:]] = True, True, True
    return SampledNodeTask(x, y, graph, Split(*masks), fanouts=[4, 4], batch_nodes=batch_nodes,
                           name="tiny")


def fit_args(args):
    """The method, task, optimiser and teachers of a `fit` case (the same on every rank and in
    the single-process run the test compares with)."""
    from gkd_ext.train import ModelSpec, OptimConfig, make_method
    task = sampled_task(batch_nodes=args["batch_nodes"])
    spec = ModelSpec("gcn", 16, 2, 1, 0.0)   # no dropout: masks are drawn per rank's rows
    models = {"student": spec}
    teachers = {}
    if args["method"] != "supervised":
        models["teacher"] = spec
        torch.manual_seed(123)
        teachers["teacher"] = task.build_model(spec)
    optim = OptimConfig(epochs=args["epochs"], lr=0.01, weight_decay=5e-4, patience=100)
    return make_method(args["method"], **models), task, optim, teachers


def case_fit(rank, world, args):
    """`fit` data-parallel: the trained student's weights and the record's result."""
    from gkd_ext.train import fit
    method, task, optim, teachers = fit_args(args)
    fitted = fit(method, task, optim, progress=False, teachers=teachers)
    weights = {k: v.detach().clone() for k, v in fitted.models["student"].state_dict().items()}
    aux = getattr(method, "aux", None)   # the loss's trainable parts (G-CRD's heads; their
    if aux is not None:                  # batch-norm running statistics are per rank)
        weights.update({f"aux.{k}": v.detach().clone() for k, v in aux.named_parameters()})
    return {"weights": weights, "test": torch.tensor(fitted.record["result"]["test"])}


def case_fit_resumed(rank, world, args):
    """`fit` data-parallel, stopped after the first epoch and resumed from the checkpoint rank 0
    wrote: the student's weights (to equal the uninterrupted run's)."""
    from gkd_ext.train import fit
    from gkd_ext.train.common import Interrupted
    method, task, optim, teachers = fit_args(args)
    ckpt = os.path.join(args["folder"], "run.pt")
    try:
        fit(method, task, optim, progress=False, teachers=teachers, checkpoint=ckpt,
            interrupt_after=1)
        raise AssertionError("the run was not interrupted")
    except Interrupted:
        pass
    method, task, optim, teachers = fit_args(args)
    fitted = fit(method, task, optim, progress=False, teachers=teachers, checkpoint=ckpt)
    return {"weights": {k: v.detach().clone() for k, v in fitted.models["student"].state_dict().items()},
            "wrote": torch.tensor(os.path.exists(ckpt))}


CASES = {"infonce": case_infonce, "gsp": case_gsp, "fit": case_fit, "fit_resumed": case_fit_resumed}


def main() -> None:
    rank, world, init_file, out_dir, cases = sys.argv[1:6]
    rank, world = int(rank), int(world)
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank,
                            world_size=world)
    try:
        results = [CASES[name](rank, world, args) for name, args in json.loads(cases)]
        torch.save(results, os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
