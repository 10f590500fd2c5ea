"""Multi-process pieces on the CPU with gloo: the ranks run as separate processes
(tests/dist_worker.py, all cases of a module in one process group, since starting processes is
the slow part) and their results are compared with the single-process computation on the
whole batch."""
from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys

import pytest
import torch

import gkd_ext
import gkd_ext.distributed as gdist
from gkd_ext.reference import infonce_dense

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from dist_worker import global_embeddings, shard  # noqa: E402

WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "dist_worker.py")
TIMEOUT_S = 180
WORLD = 2


def run_ranks(folder, world, cases):
    """Run ``cases`` (``[(name, args)]``) on ``world`` ranks; every rank must exit 0 within the
    time limit. Returns ``results[rank][case]``."""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    procs = [subprocess.Popen([sys.executable, WORKER, str(r), str(world),
                               str(folder / "rendezvous"), str(folder), json.dumps(cases)],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
             for r in range(world)]
    outputs = []
    try:
        for p in procs:
            out, _ = p.communicate(timeout=TIMEOUT_S)
            outputs.append(out.decode(errors="replace"))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    for r, (p, out) in enumerate(zip(procs, outputs)):
        assert p.returncode == 0, f"rank {r} exited {p.returncode}:\n{out[-3000:]}"
    return [torch.load(folder / f"rank{r}.pt", weights_only=True) for r in range(world)]


INFONCE = [{"counts": counts, "symmetric": sym, "impl": impl, "tau": 0.1}
           for counts, sym, impl in itertools.product([(6, 6), (5, 9), (0, 7)], (False, True),
                                                      ("fused", "reference"))]


@pytest.fixture(scope="module")
def infonce_ranks(tmp_path_factory):
    return run_ranks(tmp_path_factory.mktemp("infonce"), WORLD,
                     [("infonce", args) for args in INFONCE])


@pytest.mark.parametrize("i", range(len(INFONCE)),
                         ids=[f"{c['counts']}-{'sym' if c['symmetric'] else 'one-way'}-"
                              f"{c['impl']}" for c in INFONCE])
def test_infonce_equals_the_single_process_loss(infonce_ranks, i):
    args = INFONCE[i]
    counts, tau, symmetric = args["counts"], args["tau"], args["symmetric"]
    z_s, z_t = (z.requires_grad_() for z in global_embeddings(sum(counts), 16, 0))
    loss = gkd_ext.contrastive_loss(z_s, z_t, tau, symmetric)
    loss.backward()
    torch.testing.assert_close(loss.detach(), infonce_dense(z_s.detach(), z_t.detach(), tau,
                                                            symmetric))
    for r, ranks in enumerate(infonce_ranks):
        got = ranks[i]
        torch.testing.assert_close(got["loss"], loss.detach())   # the global value everywhere
        rows = shard(list(counts), r)
        # DDP averages over the ranks, so each rank's gradients are WORLD x the global ones.
        torch.testing.assert_close(got["grad_s"] / WORLD, z_s.grad[rows])
        torch.testing.assert_close(got["grad_t"] / WORLD, z_t.grad[rows])


GSP = [(6, 6), (5, 9), (0, 7)]


@pytest.fixture(scope="module")
def gsp_ranks(tmp_path_factory):
    return run_ranks(tmp_path_factory.mktemp("gsp"), WORLD,
                     [("gsp", {"counts": counts}) for counts in GSP])


@pytest.mark.parametrize("i", range(len(GSP)), ids=[str(c) for c in GSP])
def test_gsp_equals_the_single_process_loss(gsp_ranks, i):
    # The cosine GSP over every pair of the global batch, from the ranks' summed Grams: the
    # single-process loss, and (times WORLD, which DDP's average removes) its gradients.
    counts = GSP[i]
    g = torch.Generator().manual_seed(0)
    h_s = torch.randn(sum(counts), 8, generator=g, dtype=torch.float64, requires_grad=True)
    h_t = torch.randn(sum(counts), 12, generator=g, dtype=torch.float64, requires_grad=True)
    loss = gkd_ext.gsp_loss(h_s, h_t, "cosine")
    loss.backward()
    for r, ranks in enumerate(gsp_ranks):
        got = ranks[i]
        torch.testing.assert_close(got["loss"], loss.detach())
        rows = shard(list(counts), r)
        torch.testing.assert_close(got["grad_s"] / WORLD, h_s.grad[rows])
        torch.testing.assert_close(got["grad_t"] / WORLD, h_t.grad[rows])


def test_distributed_gsp_needs_the_cosine_kernel():
    with pytest.raises(ValueError, match="'kernel' must be 'cosine'"):
        gdist.gsp_loss(torch.randn(3, 4), torch.randn(3, 4), "rbf")


FITS = [{"method": m, "batch_nodes": 20, "epochs": 2}
        for m in ("supervised", "kd", "lsp", "gsp", "gcrd")]
# G-CRD's heads normalise with batch-norm statistics of each rank's rows, so it is not the
# single process's computation; its ranks must still stay in step (weights and heads synced).
EXACT = ("supervised", "kd", "lsp", "gsp")


@pytest.fixture(scope="module")
def fit_ranks(tmp_path_factory):
    folder = tmp_path_factory.mktemp("fit")
    resume = {**FITS[1], "folder": str(folder)}
    return run_ranks(folder, WORLD, [("fit", args) for args in FITS] + [("fit_resumed", resume)])


def test_ddp_run_resumes_from_rank_0s_checkpoint(fit_ranks):
    # Stopped after epoch 0 and resumed (rank 0 wrote the checkpoint, every rank read it): the
    # weights of the uninterrupted data-parallel run.
    for r, ranks in enumerate(fit_ranks):
        got, want = ranks[len(FITS)]["weights"], ranks[1]["weights"]
        assert bool(ranks[len(FITS)]["wrote"])
        for k in want:
            torch.testing.assert_close(got[k], want[k], rtol=0, atol=0, msg=f"rank {r} {k}")


@pytest.mark.parametrize("i", range(len(FITS)), ids=[f["method"] for f in FITS])
def test_ddp_training_equals_one_process_on_the_union_of_the_shards(fit_ranks, i):
    # Each rank steps on half of every global batch of 20 seeds (its blocks sampled as the one
    # process samples them), DDP averages the gradients, the supervised loss is rescaled by the
    # rank's share of labelled seeds: two epochs end with the single process's weights.
    from dist_worker import fit_args
    from gkd_ext.train import fit
    if FITS[i]["method"] not in EXACT:
        ranks = [r[i]["weights"] for r in fit_ranks]
        for k in ranks[0]:
            torch.testing.assert_close(ranks[1][k], ranks[0][k], rtol=0, atol=0, msg=k)
        return
    method, task, optim, teachers = fit_args(FITS[i])
    single = fit(method, task, optim, progress=False, teachers=teachers)
    want = single.models["student"].state_dict()
    for r, ranks in enumerate(fit_ranks):
        got = ranks[i]["weights"]
        assert set(got) >= set(want)
        for k in want:
            torch.testing.assert_close(got[k], want[k], rtol=1e-5, atol=1e-6, msg=f"rank {r} {k}")
        assert float(ranks[i]["test"]) == pytest.approx(single.record["result"]["test"])


def test_without_a_process_group_the_error_says_so():
    with pytest.raises(RuntimeError, match="not initialised"):
        gdist.contrastive_loss(torch.randn(3, 4), torch.randn(3, 4))


def test_torchrun_cli(tmp_path):
    # The documented command, two gloo processes: rank 0 writes the one results file.
    out = tmp_path / "kd.json"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
           "--standalone", "-m", "gkd_ext", "train", "--method", "kd", "--dataset", "cora",
           "--fanouts", "5,5", "--batch-nodes", "512", "--epochs", "1", "--teacher", "gcn",
           "--teacher-layers", "2", "--teacher-epochs", "1", "--distributed", "--no-progress",
           "--out", str(out)]
    done = subprocess.run(cmd, cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                          env=env, capture_output=True, text=True, timeout=TIMEOUT_S)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    run = json.loads(out.read_text())["runs"][0]
    assert run["task"]["sampling"]["batch_nodes"] == 512
    assert done.stdout.count("kd on cora: test") == 1   # logs from rank 0 only
