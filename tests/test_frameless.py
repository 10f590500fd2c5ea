"""Frameless graph KD on the fit loop and the CLI, the inductive task option (nothing held out
reaches training, teachers included) and SDRF as a data option."""
import dataclasses
import json

import pytest
import torch

import gkd_ext
from gkd_ext.data import undirected_graph
from gkd_ext.train import (DataConfig, InductiveNodeTask, ModelSpec, NodeTask, OptimConfig, Split,
                           build_tasks, fit, inductive_holdout, make_method, observed_subgraph)
from gkd_ext.train.method import Method, Role, register_method
from gkd_ext.train.methods.frameless import FramelessConfig
from gkd_ext.train.tasks import rewire

OPT = OptimConfig(epochs=3, lr=0.01, patience=10)
TEACHER = ModelSpec("spatufg", hidden=8, layers=2, dropout=0.1)


def tiny_data(n=80, classes=3, feats=10, seed=0):
    gen = torch.Generator().manual_seed(seed)
    y = torch.randint(0, classes, (n,), generator=gen)
    src = torch.randint(0, n, (4 * n,), generator=gen)
    dst = torch.where(torch.rand(4 * n, generator=gen) < 0.7,          # mostly same-class edges
                      _same_class(y, src, gen), torch.randint(0, n, (4 * n,), generator=gen))
    g = undirected_graph(src, dst, n)
    x = torch.rand(n, feats, generator=gen) + torch.nn.functional.one_hot(y, feats).float()
    idx = torch.randperm(n, generator=gen)
    masks = [torch.zeros(n, dtype=torch.bool) for _ in range(3)]
    masks[0][idx[:24]], masks[1][idx[24:40]], masks[2][idx[40:]] = True, True, True
    return x, y, g, Split(*masks)


def _same_class(y, src, gen):
    out = torch.empty_like(src)
    for c in y.unique():
        members = (y == c).nonzero().view(-1)
        sel = y[src] == c
        out[sel] = members[torch.randint(0, members.numel(), (int(sel.sum()),), generator=gen)]
    return out


def tiny_task():
    x, y, g, split = tiny_data()
    return NodeTask(x, y, g, split, name="tiny")


@pytest.mark.parametrize("student", ["fmlp-o", "fmlp-s", "mlp"])
def test_frameless_trains_through_fit(student):
    method = make_method("frameless", FramelessConfig(lambda_=0.3), teacher=TEACHER,
                         student=ModelSpec(student, hidden=8, layers=2, dropout=0.1))
    rec = fit(method, tiny_task(), OPT, progress=False).record
    s = rec["slots"]["student"]
    assert len(s["history"]) == 3 and 0 <= s["test"] <= 1
    assert all(torch.isfinite(torch.tensor([h["loss_student"], h["nll"], h["kl"]])).all()
               for h in s["history"])
    assert rec["slots"]["teacher"]["source"] == "trained"
    opts = rec["config"]["models"]["teacher"]["options"]
    assert opts == {"filters": "haar", "levels": 1, "order": 6, "scale": 2.0}
    if student != "mlp":
        assert rec["config"]["models"]["student"]["options"]["knowledge"] == "auto"


def test_frameless_loss_is_the_stated_mix():
    method = make_method("frameless", FramelessConfig(lambda_=0.25))
    task = tiny_task()
    method.setup(type("Ctx", (), {"task": task})())
    from gkd_ext.train.method import Output
    s, t = torch.randn(80, 3), torch.randn(80, 3)
    batch = next(task.train_batches())
    loss = method.step({"student": Output(s, []), "teacher": Output(t, [])}, batch, ["student"])[0]
    nll = torch.nn.functional.nll_loss(torch.log_softmax(s, -1)[batch.loss_rows], task.y[batch.loss_rows])
    p = torch.softmax(t, -1)
    kl = (p * (p.log() - torch.log_softmax(s, -1))).sum() / 80
    torch.testing.assert_close(loss["student"], 0.25 * nll + 0.75 * kl)


def test_framelet_options_reach_both_models_and_any_teacher_works():
    m = make_method("frameless", FramelessConfig(filters="linear", levels=2, order=4),
                    student=ModelSpec("fmlp-s", options={"order": 8}))
    assert m.specs["teacher"].options == {"filters": "linear", "levels": 2, "order": 4, "scale": 2.0}
    assert m.specs["student"].options["order"] == 8 and m.specs["student"].options["levels"] == 2
    m = make_method("frameless", teacher=ModelSpec("gcn", hidden=8))
    assert m.specs["teacher"].options == {}
    rec = fit(m, tiny_task(), OPT, progress=False).record
    assert rec["slots"]["teacher"]["spec"]["arch"] == "gcn"
    # A SpatUFG is also a teacher for the other methods.
    rec = fit(make_method("kd", teacher=TEACHER, student=ModelSpec("fmlp-s", hidden=8)),
              tiny_task(), OPT, progress=False).record
    assert rec["slots"]["student"]["spec"]["arch"] == "fmlp-s"
    task = tiny_task()
    task.multilabel = True
    with pytest.raises(ValueError, match="multi-label tasks are not supported"):
        make_method("frameless").setup(type("Ctx", (), {"task": task})())


def test_frameless_through_the_cli(tmp_path, capsys):
    from gkd_ext.train.cli import main
    with pytest.raises(SystemExit):
        main(["--method", "frameless", "--help"])
    text = capsys.readouterr().out
    for flag in ("--lambda", "--filters", "--levels", "--order", "--scale", "--student",
                 "--sdrf-iterations", "--inductive"):
        assert flag in text
    out = tmp_path / "fr.json"
    main(["--method", "frameless", "--dataset", "cora", "--student", "fmlp-s", "--lambda", "0.2",
          "--teacher-hidden", "8", "--student-hidden", "8", "--epochs", "2", "--teacher-epochs",
          "2", "--sdrf-iterations", "3", "--inductive", "0.2", "--no-progress", "--out", str(out)])
    res = json.loads(out.read_text())
    run = res["runs"][0]
    assert res["config"]["config"]["lambda_"] == 0.2
    assert run["slots"]["student"]["spec"]["arch"] == "fmlp-s"
    assert run["task"]["task"] == "InductiveNodeTask"
    assert run["task"]["transforms"]["sdrf"]["iterations"] == 3
    assert set(run["slots"]["student"]["at_best"]) >= {"test", "test_observed", "test_all"}
    with pytest.raises(SystemExit):
        main(["--method", "frameless", "--lambda", "1.5"])
    assert "must be <= 1" in capsys.readouterr().err


# ------------------------------------------------------------------ the inductive option
def inductive_task(nan_held=False, train_graph=None):
    x, y, g, split = tiny_data()
    held = inductive_holdout(split.test, 0.5, seed=3)
    if nan_held:
        x = x.clone()
        x[held] = float("nan")
    return InductiveNodeTask(x, y, g, split, held, train_graph=train_graph, name="tiny"), held, g


def test_inductive_batches_hold_nothing_held_out():
    task, held, g = inductive_task()
    assert 0 < int(held.sum()) < int(task.split.test.sum())
    (batch,) = list(task.train_batches())
    ids = batch.node_ids
    assert not bool(held[ids].any()) and ids.numel() == int((~held).sum())
    assert torch.equal(batch.x, task.x[ids]) and torch.equal(batch.target_ids, ids)
    # Every training edge is an original edge between two observed nodes, and all of those are there.
    train_edges = {tuple(e) for e in ids[batch.graph.edge_index].t().tolist()}
    want = {tuple(e) for e in g.edge_index.t().tolist() if not held[e[0]] and not held[e[1]]}
    assert train_edges == want
    assert list(task.frozen_batches())[0] is batch
    (ev,) = list(task.eval_batches())
    assert ev.graph.num_edges == g.num_edges and ev.node_ids is None
    rows = task.split_rows()
    assert torch.equal(rows["test"], held) and torch.equal(rows["test_all"], task.split.test)
    assert torch.equal(rows["test_observed"] | rows["test"], rows["test_all"])
    with pytest.raises(ValueError, match="'held_out' must only hold test nodes"):
        x, y, g, split = tiny_data()
        InductiveNodeTask(x, y, g, split, split.train)


@register_method
class _Spy(Method):
    """Records every batch and teacher output training gets."""
    name = "test-spy"
    models = {"teacher": ModelSpec("gcn", hidden=8), "student": ModelSpec("fmlp-o", hidden=8)}
    roles = {"teacher": Role.TEACHER, "student": Role.STUDENT}
    seen = []

    def setup(self, ctx):
        self.task = ctx.task
        return {}

    def step(self, out, batch, learners):
        _Spy.seen.append((batch.node_ids, out["teacher"].logits.detach().clone(),
                          out["student"].logits.detach().clone()))
        return {"student": self.task.loss(out["student"].logits, batch)}, {}


@pytest.mark.parametrize("teacher", ["gcn", "spatufg"])
def test_inductive_training_never_reads_held_out_nodes(teacher):
    # Held-out features are NaN: any of them reaching training (the student's knowledge
    # features, the teacher's training or its cached outputs) would turn a loss NaN.
    task, held, _ = inductive_task(nan_held=True)
    _Spy.seen = []
    spy = make_method("test-spy", teacher=ModelSpec(teacher, hidden=8),
                      student=ModelSpec("fmlp-o", hidden=8, options={"knowledge": "precompute"}))
    rec = fit(spy, task, OPT, progress=False).record
    assert rec["slots"]["teacher"]["source"] == "trained"
    assert all(torch.isfinite(torch.tensor(h["loss"] if "loss" in h else h["val"]))
               for h in rec["slots"]["teacher"]["history"])
    for ids, t_logits, s_logits in _Spy.seen:
        assert not bool(held[ids].any())
        assert bool(torch.isfinite(t_logits).all()) and bool(torch.isfinite(s_logits).all())
    assert all(torch.isfinite(torch.tensor(h["loss_student"])) for h in rec["slots"]["student"]["history"])
    # The frameless method itself on the same task.
    rec = fit(make_method("frameless", teacher=ModelSpec(teacher, hidden=8),
                          student=ModelSpec("fmlp-s", hidden=8)), task, OPT, progress=False).record
    assert all(torch.isfinite(torch.tensor(h["loss_student"])) for h in rec["slots"]["student"]["history"])


def test_build_tasks_inductive_and_sdrf(monkeypatch):
    cfg = DataConfig("cora", inductive=0.2)
    (_, a), = build_tasks(cfg, seed=0)
    (_, b), = build_tasks(cfg, seed=0)
    (_, c), = build_tasks(cfg, seed=1)
    assert isinstance(a, InductiveNodeTask) and torch.equal(a.held_out, b.held_out)
    assert not torch.equal(a.held_out, c.held_out)
    assert int(a.held_out.sum()) == round(0.2 * int(a.split.test.sum()))
    assert a.signature()["transforms"] == {"inductive": 0.2}
    (_, t), = build_tasks(DataConfig("cora"), seed=0)
    assert "transforms" not in t.signature()           # unchanged for existing checkpoints
    from gkd_ext.data import GraphDataset
    ds = GraphDataset("toy", torch.ones(4, 1),
                      undirected_graph(torch.tensor([0, 2]), torch.tensor([1, 3]), 4),
                      torch.tensor([0, 0, 1, 1]), torch.tensor([0, 1]))
    monkeypatch.setattr(gkd_ext.data, "load_dataset", lambda *args, **kwargs: ds)
    with pytest.raises(ValueError, match="apply to node classification"):
        build_tasks(DataConfig("toy", sdrf_iterations=2), seed=0)


def test_sdrf_rewiring_keeps_held_out_edges_out_of_it():
    x, y, g, split = tiny_data()
    held = inductive_holdout(split.test, 0.5, seed=3)
    cfg = DataConfig(sdrf_iterations=8, sdrf_removal_bound=0.0)
    full, train_graph, transforms = rewire(g, cfg, seed=5, held_out=held)
    assert transforms["sdrf"]["added"] + transforms["sdrf"]["removed"] > 0
    # Edges at held-out nodes are exactly the original ones; the rest is the rewired part.
    at = lambda gr: {tuple(e) for e in gr.edge_index.t().tolist() if held[e[0]] or held[e[1]]}
    assert at(full) == at(g)
    sub, ids = observed_subgraph(full, ~held)
    assert {tuple(e) for e in ids[sub.edge_index].t().tolist()} == \
        {tuple(e) for e in ids[train_graph.edge_index].t().tolist()}
    again = rewire(g, cfg, seed=5, held_out=held)[0]
    assert torch.equal(again.col, full.col) and torch.equal(again.rowptr, full.rowptr)
    task = InductiveNodeTask(x, y, full, split, held, train_graph=train_graph,
                             transforms=transforms)
    assert task.signature()["transforms"]["sdrf"]["iterations"] == 8
    # Transductive: the whole graph is rewired, teacher and student get the same one.
    tg, none, tr = rewire(g, dataclasses.replace(cfg, sdrf_iterations=4), seed=5)
    assert none is None and tr["sdrf"]["added"] >= 1
    assert {tuple(e) for e in tg.edge_index.t().tolist()} != {tuple(e) for e in g.edge_index.t().tolist()}
