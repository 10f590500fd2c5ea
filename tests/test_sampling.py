"""Neighbour sampling (gkd::sample_neighbors, gkd_ext.sampling) and mini-batch training on
sampled blocks: the op against its plain-Python reference, the blocks' validity, the models on
blocks against the full graph, and every method through `fit` in mini-batches."""
import pytest
import torch

from gkd_ext import Graph
from gkd_ext.nn import FMLP, GAT, GCN, MLP, GraphSAGE, WholeGraphRows
from gkd_ext.graph import remove_self_loops
from gkd_ext.nn.gin import GIN
from gkd_ext.reference import sample_neighbors_reference
from gkd_ext.sampling import NeighborSampler, induced_subgraph, padded_square, sample_neighbors
from gkd_ext.train import ModelSpec, NodeTask, OptimConfig, fit, make_method
from gkd_ext.train.tasks import Batch, SampledNodeTask, observed_subgraph, run_model

from conftest import DEVICES
from test_train import tiny_task


def random_graph(n=80, e=500, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return Graph.from_edge_index(torch.randint(0, n, (2, e), generator=gen), n)


def op(g, nodes, fanout, replace, seed):
    return torch.ops.gkd.sample_neighbors(g.rowptr, g.col, nodes, fanout, replace, seed)


# ------------------------------------------------------------------ the op
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("fanout,replace", [(-1, False), (0, False), (1, False), (3, False),
                                            (7, False), (50, False), (0, True), (1, True),
                                            (4, True)])
def test_op_equals_reference(device, fanout, replace):
    g = random_graph()
    nodes = torch.randperm(80, generator=torch.Generator().manual_seed(1))[:30]
    ref = sample_neighbors_reference(g, nodes, fanout, replace, seed=987654321)
    got = op(g.to(device), nodes.to(device), fanout, replace, 987654321)
    for name, a, b in zip(("rowptr", "col", "src_nodes", "edge_ids"), got, ref):
        assert torch.equal(a.cpu(), b), name


@pytest.mark.parametrize("device", DEVICES)
def test_multi_hop_blocks_are_the_same_on_every_device(device):
    # A seed fixes the whole batch: the blocks (and a model's outputs on them) on this device
    # equal the CPU's.
    g = random_graph(300, 3000, seed=4)
    seeds = torch.randperm(300, generator=torch.Generator().manual_seed(2))[:40]
    cpu = NeighborSampler(g, [5, 3]).sample(seeds, seed=77)
    dev = NeighborSampler(g.to(device), [5, 3]).sample(seeds.to(device), seed=77)
    assert torch.equal(dev.node_ids.cpu(), cpu.node_ids)
    for a, b in zip(dev.graphs, cpu.graphs):
        assert torch.equal(a.rowptr.cpu(), b.rowptr) and torch.equal(a.col.cpu(), b.col)
    torch.manual_seed(0)
    model = GCN(8, 16, 3).eval()
    x = torch.randn(300, 8)
    want = model(model.prepare_blocks(cpu), x[cpu.node_ids])[0]
    got = model.to(device)(model.prepare_blocks(dev), x.to(device)[dev.node_ids])[0]
    torch.testing.assert_close(got.cpu(), want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("replace", [False, True])
def test_blocks_are_valid(replace):
    g = random_graph(120, 1500, seed=3)
    nodes = torch.randperm(120)[:40]
    fanout = 5
    rowptr, col, src, eids = op(g, nodes, fanout, replace, 11)
    deg = g.degree("in")[nodes]
    counts = rowptr[1:] - rowptr[:-1]
    expected = torch.where(deg > 0, torch.full_like(deg, fanout), 0) if replace else deg.clamp(max=fanout)
    assert torch.equal(counts, expected)                        # fan-out respected
    assert torch.equal(src[:40], nodes) and src.unique().numel() == src.numel()
    block_dst = torch.repeat_interleave(torch.arange(40), counts)
    assert torch.equal(g.col[eids], src[col])                   # every sampled edge exists ...
    assert torch.equal(g.row[eids], nodes[block_dst])           # ... with these endpoints
    for i in range(40):                                          # rows in CSR order
        row = eids[rowptr[i]:rowptr[i + 1]]
        assert bool((row[1:] >= row[:-1]).all())
        if not replace:
            assert row.unique().numel() == row.numel()           # no edge twice
    again = op(g, nodes, fanout, replace, 11)
    assert all(torch.equal(a, b) for a, b in zip(again, (rowptr, col, src, eids)))
    other = op(g, nodes, fanout, replace, 12)
    assert not torch.equal(other[3], eids)


@pytest.mark.parametrize("replace", [False, True])
def test_draws_are_uniform(replace):
    # One node of degree 10; 2 of its edges per draw, 4000 seeds: each edge is drawn with
    # probability 0.2 (binomial sd ~ 25 draws).
    g = Graph.from_edge_index(torch.stack([torch.arange(1, 11), torch.zeros(10, dtype=torch.long)]), 11)
    hits = torch.zeros(10)
    for s in range(4000):
        eids = op(g, torch.tensor([0]), 2, replace, s)[3]
        hits += torch.bincount(eids, minlength=10)
    assert float((hits - 800).abs().max()) < 5 * 25, hits


def test_op_errors_name_the_argument():
    g = random_graph(10, 30)
    with pytest.raises(RuntimeError, match=r"'nodes' must hold node ids in \[0, 10\).*nodes\[1\] = 10"):
        op(g, torch.tensor([0, 10]), 2, False, 0)
    with pytest.raises(RuntimeError, match=r"'nodes' must not repeat a node, but nodes\[2\] = 3"):
        op(g, torch.tensor([3, 4, 3]), 2, False, 0)
    with pytest.raises(RuntimeError, match="'fanout' must be >= 0, or -1"):
        op(g, torch.tensor([0]), -2, False, 0)
    with pytest.raises(RuntimeError, match="'nodes' must be a contiguous 1-D int64"):
        op(g, torch.tensor([0], dtype=torch.int32), 2, False, 0)
    bad_col = Graph(g.rowptr, g.col.clone().fill_(99), 10, validate=False)
    with pytest.raises(RuntimeError, match=r"'col' must hold source ids in \[0, 10\)"):
        op(bad_col, torch.tensor([int(g.col.numel() and g.row[0])]), -1, False, 0)
    rowptr = g.rowptr.clone()
    rowptr[3] = rowptr[4] + 1
    with pytest.raises(RuntimeError, match="'rowptr' is malformed at node 3"):
        torch.ops.gkd.sample_neighbors(rowptr, g.col, torch.tensor([3]), 2, False, 0)
    rect = Graph.from_edge_index(torch.tensor([[0, 1], [0, 0]]), (2, 1))
    with pytest.raises(ValueError, match="must be square"):
        sample_neighbors(rect, torch.tensor([0]), 2)
    with pytest.raises(ValueError, match="'fanouts' must be a non-empty list"):
        NeighborSampler(g, [])


def test_opcheck():
    g = random_graph(30, 120)
    for args in [(g.rowptr, g.col, torch.tensor([4, 0, 7]), 3, False, 5),
                 (g.rowptr, g.col, torch.tensor([1, 2]), 2, True, 6),
                 (g.rowptr, g.col, torch.tensor([9]), -1, False, 7)]:
        torch.library.opcheck(torch.ops.gkd.sample_neighbors, args,
                              test_utils=("test_schema", "test_faketensor"))


def test_induced_subgraph_and_padded_square():
    g = random_graph(50, 300, seed=5)
    nodes = torch.randperm(50)[:20]
    sub = induced_subgraph(g, nodes)
    mask = torch.zeros(50, dtype=torch.bool)
    mask[nodes] = True
    ref, ids = observed_subgraph(g, mask)   # the same subgraph, numbered in id order
    order = torch.argsort(nodes)            # local i (sorted) is nodes[order[i]]
    relabel = torch.empty(20, dtype=torch.long)
    relabel[order] = torch.arange(20)
    mine = {tuple(e) for e in relabel[sub.edge_index].t().tolist()}
    assert sorted(mine) == sorted({tuple(e) for e in ref.edge_index.t().tolist()})
    block = sample_neighbors(g, nodes, 3, seed=1)[0]
    sq = padded_square(block)
    assert sq.is_square and sq.num_dst == block.num_src and torch.equal(sq.col, block.col)
    assert int(sq.degree("in")[block.num_dst:].sum()) == 0


# ------------------------------------------------------------------ models on blocks
MODELS = {
    "gcn": lambda: GCN(8, 16, 3), "gcn3": lambda: GCN(8, 16, 3, num_layers=3),
    "sage": lambda: GraphSAGE(8, 16, 3), "sage_pool": lambda: GraphSAGE(8, 16, 3, aggr="pool"),
    "gat": lambda: GAT(8, 4, 3, heads=2), "gin": lambda: GIN(8, 16, 3), "mlp": lambda: MLP(8, 16, 3),
}


@pytest.mark.parametrize("name", sorted(MODELS))
def test_models_on_full_fanout_blocks_equal_the_full_graph(name):
    torch.manual_seed(0)
    g = remove_self_loops(random_graph(60, 300))
    x = torch.randn(60, 8)
    seeds = torch.randperm(60)[:10]
    model = MODELS[name]().eval()
    full_logits, full_hidden = model(model.prepare(g), x)
    blocks = NeighborSampler(g, [-1, -1, -1]).sample(seeds)   # a 2-layer model uses the last 2
    batch = Batch(padded_square(blocks.graphs[-1]), x[blocks.node_ids], None, blocks=blocks)
    logits, hidden = run_model(model, model.prepare_blocks(blocks), batch)
    rows = blocks.node_ids[: blocks.num_hidden_rows]
    torch.testing.assert_close(logits, full_logits[seeds])
    assert len(hidden) == len(full_hidden)
    for h, f in zip(hidden, full_hidden):
        torch.testing.assert_close(h, f[rows])


def test_sampled_gcn_is_unbiased():
    # GCN's sampled sum is rescaled by d_i / k_i: averaged over many samples it approaches the
    # full-graph output (tolerance: the standard error of 600 samples).
    torch.manual_seed(0)
    g = remove_self_loops(random_graph(40, 400))
    x = torch.randn(40, 8)
    model = GCN(8, 16, 3, num_layers=1).eval()
    full = model(model.prepare(g), x)[0]
    seeds = torch.arange(10)
    sampler = NeighborSampler(g, [3])
    outs = []
    for s in range(600):
        blocks = sampler.sample(seeds, seed=s)
        outs.append(model(model.prepare_blocks(blocks), x[blocks.node_ids])[0])
    outs = torch.stack(outs)
    err = (outs.mean(0) - full[seeds]).abs()
    assert bool((err <= 4 * outs.std(0) / 600 ** 0.5 + 1e-5).all())


@pytest.mark.parametrize("single", [False, True])
@pytest.mark.parametrize("knowledge", ["precompute", "propagate"])
def test_row_wise_framelet_students_on_batch_rows_equal_the_full_graph(single, knowledge):
    # A framelet MLP reads only its nodes' rows of the whole graph's knowledge: on a sampled
    # batch it runs on those rows (WholeGraphRows), not on the blocks.
    torch.manual_seed(0)
    g = remove_self_loops(random_graph(60, 300))
    x = torch.randn(60, 8)
    model = FMLP(8, 16, 3, num_layers=2, single=single, knowledge=knowledge).eval()
    assert model.row_wise
    ops = model.prepare(g)
    full_logits, full_hidden = model(ops, x)
    blocks = NeighborSampler(g, [3, 3]).sample(torch.randperm(60)[:10], seed=1)
    rows = blocks.node_ids[: blocks.num_hidden_rows]
    batch = Batch(blocks.graphs[-1], x[blocks.node_ids], None, blocks=blocks)
    logits, hidden = run_model(model, WholeGraphRows(ops, x, rows), batch)
    torch.testing.assert_close(logits, full_logits[blocks.node_ids[: blocks.num_seeds]])
    assert len(hidden) == len(full_hidden) == 1
    torch.testing.assert_close(hidden[0], full_hidden[0][rows])


def test_model_deeper_than_the_fanouts_is_refused():
    g = random_graph(30, 100)
    blocks = NeighborSampler(g, [5]).sample(torch.tensor([0, 1]))
    model = GCN(8, 16, 3)
    with pytest.raises(ValueError, match="needs 2 sampled hops, but the batch has 1"):
        model(model.prepare_blocks(blocks), torch.randn(blocks.node_ids.numel(), 8))


# ------------------------------------------------------------------ fit in mini-batches
def sampled(task, fanouts=(4, 4, 4), batch_nodes=8):
    return SampledNodeTask(task.x, task.y, task.graph, task.split, fanouts=list(fanouts),
                           batch_nodes=batch_nodes, name="tiny")


OPT = OptimConfig(epochs=2, lr=0.01, weight_decay=5e-4, patience=10)
GCN_SPEC = ModelSpec("gcn", 16, 2, 1, 0.1)


@pytest.mark.parametrize("method,kwargs", [
    ("supervised", {"student": GCN_SPEC}),
    ("kd", {"teacher": ModelSpec("gat", 8, 2, 2, 0.1), "student": ModelSpec("sage", 16, 2, 1, 0.1)}),
    ("lsp", {"student": GCN_SPEC}), ("gsp", {"student": GCN_SPEC}), ("gcrd", {"student": GCN_SPEC}),
    ("alignahead", {}), ("gml", {}),
])
def test_every_method_trains_in_mini_batches(method, kwargs):
    task = sampled(tiny_task())
    rec = fit(make_method(method, **kwargs), task, OPT, progress=False).record
    assert rec["task"]["sampling"] == {"fanouts": [4, 4, 4], "batch_nodes": 8, "replace": False}
    assert rec["timings"]["epochs"] == 2
    for slot in rec["slots"].values():
        assert 0.0 <= slot["test"] <= 1.0


def test_one_full_fanout_batch_equals_full_batch_training():
    # All training nodes in one batch with every neighbour: the same losses and gradients as
    # the full graph (up to summation order), so the same weights after training (no dropout,
    # whose masks would be drawn over other rows).
    task = tiny_task()
    # The sampler never draws self-loops (the models add their own), so the full graph has none.
    task = NodeTask(task.x, task.y, remove_self_loops(task.graph), task.split, name="tiny")
    spec = ModelSpec("gcn", 16, 2, 1, 0.0)
    method = lambda: make_method("lsp", student=spec, teacher=ModelSpec("gcn", 16, 2, 1, 0.0))  # noqa: E731
    teacher = fit(make_method("supervised", student=spec), task, OPT, progress=False).models["student"]
    full = fit(method(), task, OPT, progress=False, teachers={"teacher": teacher})
    mini = fit(method(), sampled(task, (-1, -1, -1), batch_nodes=1000), OPT, progress=False,
               teachers={"teacher": teacher})
    for a, b in zip(full.models["student"].parameters(), mini.models["student"].parameters()):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_cli_fanouts(tmp_path, capsys):
    import json
    from gkd_ext.train.cli import main
    out = tmp_path / "r.json"
    main(["--method", "supervised", "--dataset", "cora", "--epochs", "2", "--fanouts", "5,5",
          "--batch-nodes", "64", "--out", str(out), "--no-progress"])
    run = json.loads(out.read_text())["runs"][0]
    assert run["task"]["sampling"] == {"fanouts": [5, 5], "batch_nodes": 64, "replace": False}
    with pytest.raises(SystemExit):
        main(["--dataset", "cora", "--fanouts", "5,x", "--epochs", "1",
              "--out", str(tmp_path / "bad.json"), "--no-progress"])
    assert "--fanouts must be comma-separated ints >= -1" in capsys.readouterr().err


def test_a_model_without_block_support_says_so():
    task = sampled(tiny_task())
    with pytest.raises(ValueError, match="SpatUFG .* does not run on sampled neighbourhoods.*"
                                         "--teacher saved --teacher-ckpt"):
        fit(make_method("frameless"), task, OPT, progress=False)


@pytest.mark.parametrize("student", ["fmlp-o", "fmlp-s"])
def test_frameless_in_mini_batches(tmp_path, student):
    # The framelet students train on their seeds' knowledge rows; the SpatUFG teacher, which
    # cannot sample, is trained on the full graph and loaded from its checkpoint (mini-batch
    # and full-graph runs of a task share a checkpoint signature); a sampling teacher (GCN)
    # trains in the mini-batches.
    from gkd_ext.train.fit import save_model
    full = tiny_task()
    task = sampled(full, fanouts=(4, 4), batch_nodes=16)
    spec = ModelSpec("spatufg", 8, 2, 1, 0.1)
    teacher = fit(make_method("supervised", student=spec), full, OPT, progress=False)
    path = str(tmp_path / "spatufg.pt")
    save_model(path, spec, teacher.models["student"], full)
    fmlp = ModelSpec(student, 8, 2, 1, 0.1)
    loaded = fit(make_method("frameless", teacher=ModelSpec("saved"), student=fmlp), task, OPT,
                 progress=False, teachers={"teacher": path})
    sampling_teacher = fit(make_method("frameless", teacher=ModelSpec("gcn", 8, 2, 1, 0.1),
                                       student=fmlp), task, OPT, progress=False).record
    assert sampling_teacher["slots"]["teacher"]["source"] == "trained"
    rec = loaded.record
    assert rec["slots"]["teacher"]["source"].startswith("loaded")
    assert rec["slots"]["teacher"]["test"] == teacher.record["slots"]["student"]["test"]
    assert rec["timings"]["epochs"] == 2 and 0.0 <= rec["slots"]["student"]["test"] <= 1.0


@pytest.mark.parametrize("reduction", ["node_mean", "edge_mean", "sum", "none"])
def test_lsp_on_a_sampled_block(reduction):
    # LSP over a block: the KL of its destinations (the seeds) over the sampled edges, against
    # the unfused reference, with gradients.
    from gkd_ext.functional import lsp_loss
    from gkd_ext.reference import lsp_reference_pyg
    g = random_graph(50, 300, seed=2)
    block = sample_neighbors(g, torch.arange(10), 4, seed=3)[0]
    gen = torch.Generator().manual_seed(0)
    h_s = torch.randn(block.num_src, 5, dtype=torch.float64, generator=gen, requires_grad=True)
    h_t = torch.randn(block.num_src, 7, dtype=torch.float64, generator=gen)
    got = lsp_loss(block, h_s, h_t, "rbf", reduction)
    torch.testing.assert_close(got, lsp_reference_pyg(block, h_s, h_t, "rbf", reduction))
    assert got.shape == ((10,) if reduction == "none" else ())
    assert torch.autograd.gradcheck(lambda h: lsp_loss(block, h, h_t, "rbf", reduction).sum(), (h_s,))
    with pytest.raises(ValueError, match="num_dst <= num_src"):
        lsp_loss(Graph.from_edge_index(torch.tensor([[0], [1]]), (1, 2)), h_s[:1], h_t[:1])


def test_large_teacher_outputs_are_memory_mapped(monkeypatch):
    # Above the threshold the cached teacher outputs live in (unlinked) memory-mapped files;
    # training reads them as it reads tensors in memory.
    import importlib
    import numpy as np
    from gkd_ext.train.fit import Output, mapped_if_large
    fit_module = importlib.import_module("gkd_ext.train.fit")   # the module, not the function
    out = Output(torch.randn(5, 3), [torch.randn(5, 4)])
    monkeypatch.setattr(fit_module, "MAP_BYTES", 0)
    got = mapped_if_large(out)
    assert isinstance(got.logits.numpy(), np.ndarray) and got.logits.numpy().base is not None
    assert torch.equal(got.logits, out.logits) and torch.equal(got.hidden[0], out.hidden[0])
    task = sampled(tiny_task())
    kd = lambda: make_method("kd", teacher=ModelSpec("gcn", 16, 2, 1, 0.1), student=GCN_SPEC)  # noqa: E731
    teacher = fit(make_method("supervised", student=ModelSpec("gcn", 16, 2, 1, 0.1)), task, OPT,
                  progress=False).models["student"]
    torch.manual_seed(0)
    mapped = fit(kd(), task, OPT, progress=False, teachers={"teacher": teacher}).record
    monkeypatch.setattr(fit_module, "MAP_BYTES", 2 ** 40)
    torch.manual_seed(0)
    in_memory = fit(kd(), task, OPT, progress=False, teachers={"teacher": teacher}).record
    assert mapped["slots"]["student"]["history"] == in_memory["slots"]["student"]["history"]
