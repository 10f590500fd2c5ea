"""Graph mutual learning: MutualLoss against deep mutual learning and the per-node reference,
the ALW unit, and the gml method on the fit loop."""
import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F

from gkd_ext.losses import AdaptiveLogitWeighting, MutualLoss, confidence_features
from gkd_ext.reference import mutual_reference
from gkd_ext.train import GraphTask, ModelSpec, OptimConfig, fit, make_method
from gkd_ext.train.common import Interrupted
from gkd_ext.train.methods.gml import GMLConfig
from test_train import tiny_graph_dataset, tiny_task


def _logits(K=3, n=9, C=4, seed=0, scale=2.0):
    gen = torch.Generator().manual_seed(seed)
    return [(scale * torch.randn(n, C, generator=gen, dtype=torch.float64)).requires_grad_()
            for _ in range(K)]


def test_without_alw_and_entropy_it_is_deep_mutual_learning():
    y = torch.tensor([0, 1, 2, 3, 0, 1, 2, 3, 0])
    rows = torch.tensor([True, False] * 4 + [True])
    T = 2.0
    z0, z1 = _logits(K=2)
    loss = MutualLoss(2, lambda_kd=1.0, lambda_ent=0.0, adaptive=False, temperature=T)
    got = loss([z0, z1], y, rows)

    def dml(me, other):   # Zhang et al. 2018: CE + KL(p_other || p_me), at temperature T
        p_other = F.softmax(other.detach() / T, -1)
        kl = (p_other * (p_other.log() - F.log_softmax(me / T, -1))).sum(-1).mean()
        return F.cross_entropy(me[rows], y[rows]) + kl
    torch.testing.assert_close(got, torch.stack([dml(z0, z1), dml(z1, z0)]))
    # three peers: the target is the others' averaged logits
    z = _logits(K=3)
    got3 = MutualLoss(3, lambda_ent=0.0, adaptive=False, temperature=T)(z)
    for k in range(3):
        q = F.softmax(sum(z[j].detach() for j in range(3) if j != k) / 2 / T, -1)
        ref = (q * (q.log() - F.log_softmax(z[k] / T, -1))).sum(-1).mean()
        torch.testing.assert_close(got3[k], ref)


def test_matches_the_per_node_reference_with_a_trained_unit():
    z = _logits()
    y = torch.tensor([0, 1, 2, 3, 0, 1, 2, 3, 0])
    loss = MutualLoss(3, lambda_kd=0.7, lambda_ent=0.2, t_min=0.5, t_max=3.0).double()
    with torch.no_grad():   # a unit that is not at its neutral start
        for p in loss.alw.parameters():
            p.copy_(torch.randn_like(p))
    alpha, T = loss.weights(z)
    torch.testing.assert_close(loss(z, y), mutual_reference(z, alpha, T, 0.7, 0.2, y))


def test_alw_weights_are_a_distribution_over_the_other_peers_and_t_is_bounded():
    unit = AdaptiveLogitWeighting(0.5, 3.0)
    with torch.no_grad():
        unit.score.weight.fill_(5.0)
        unit.temperature.weight.fill_(-40.0)
    loss = MutualLoss(4, t_min=0.5, t_max=3.0)
    loss.alw = unit
    z = [torch.randn(50, 6) * s for s in (1.0, 1e3, 1e-3, 30.0)]   # extreme confidences
    with torch.no_grad():
        alpha, T = loss.weights(z)
    torch.testing.assert_close(alpha.sum(1), torch.ones(4, 50))
    assert torch.all(alpha[torch.arange(4), torch.arange(4)] == 0)
    assert float(T.min()) >= 0.5 and float(T.max()) <= 3.0
    assert torch.isfinite(loss(z)).all()
    phi = confidence_features(z[1])
    assert float(phi.min()) >= 0 and float(phi.max()) <= 1 + 1e-6


def test_gradients_reach_the_unit_and_never_the_other_peers():
    z = _logits()
    loss = MutualLoss(3).double()
    losses = loss(z)
    grads = torch.autograd.grad(losses[0], z + list(loss.alw.parameters()), allow_unused=True)
    assert grads[0].abs().sum() > 0
    for g in grads[1:3]:                                   # targets are detached
        assert g is None or float(g.abs().sum()) == 0.0
    assert sum(float(g.abs().sum()) for g in grads[3:]) > 0   # the unit learns
    # each peer's loss in its own logits (the others are constants to it), and in the unit
    others = [t.detach() for t in z[1:]]
    assert torch.autograd.gradcheck(lambda a: loss([a] + others)[0], (z[0],))
    params = {k: v.detach().clone().requires_grad_() for k, v in loss.named_parameters()}
    names = list(params)
    consts = [t.detach() for t in z]
    assert torch.autograd.gradcheck(
        lambda *ps: torch.func.functional_call(loss, dict(zip(names, ps)), (consts,)).sum(),
        tuple(params.values()))


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="'num_peers' must be an integer >= 2"):
        MutualLoss(1)
    with pytest.raises(ValueError, match="same number of classes"):
        MutualLoss(2)([torch.randn(5, 3), torch.randn(5, 4)])
    with pytest.raises(ValueError, match="expected a list of 3"):
        MutualLoss(3)([torch.randn(5, 3), torch.randn(5, 3)])
    with pytest.raises(ValueError, match="--peers needs at least 2"):
        make_method("gml", GMLConfig(peers="gcn"))
    with pytest.raises(ValueError, match="unknown model 'transformer'"):
        make_method("gml", GMLConfig(peers="gcn,transformer"))
    with pytest.raises(ValueError, match="must not exceed --t-max"):
        make_method("gml", GMLConfig(t_min=5.0, t_max=2.0))


OPT = OptimConfig(epochs=30, lr=0.01, weight_decay=5e-4, patience=100)


@pytest.mark.parametrize("schedule", ["joint", "alternating"])
def test_heterogeneous_peers_train(schedule):
    method = make_method("gml", GMLConfig(peers="gcn,gat,sage,gin,mlp", schedule=schedule),
                         peer=ModelSpec("gcn", 16, 2, heads=2, dropout=0.1))
    rec = fit(method, tiny_task(), OPT, progress=False).record
    assert list(rec["slots"]) == ["peer0_gcn", "peer1_gat", "peer2_sage", "peer3_gin", "peer4_mlp"]
    for name, slot in rec["slots"].items():
        first, last = slot["history"][0], slot["history"][-1]
        assert last[f"loss_{name}"] < first[f"loss_{name}"]     # every peer learns
        assert last["train"] > first["train"] or last["train"] == 1.0
    assert "ensemble" in rec["combined"]
    last = rec["slots"]["peer0_gcn"]["history"][-1]
    assert 1.0 <= last["t_min"] <= last["t_max"] <= 4.0
    weights = [last[f"alw_weight_{n}"] for n in rec["slots"]]
    assert sum(weights) == pytest.approx(5 / 4)   # each target's weights sum to 1


def test_resume_equals_an_uninterrupted_run(tmp_path):
    task = tiny_task()
    opt = dataclasses.replace(OPT, epochs=6)
    method = lambda: make_method("gml", GMLConfig(peers="gcn,sage"), peer=ModelSpec("gcn", 8))  # noqa: E731
    full = fit(method(), task, opt, seed=2, progress=False).record
    ckpt = str(tmp_path / "gml.pt")
    with pytest.raises(Interrupted):
        fit(method(), task, opt, seed=2, progress=False, checkpoint=ckpt, interrupt_after=3)
    resumed = fit(method(), task, opt, seed=2, progress=False, checkpoint=ckpt).record
    for n in full["slots"]:
        assert resumed["slots"][n]["history"] == full["slots"][n]["history"]
    assert resumed["combined"] == full["combined"]


def test_graph_classification_cohort():
    data = tiny_graph_dataset()
    ids = torch.arange(data.num_graphs)
    task = GraphTask(data, ids[:24], ids[24:32], ids[32:], batch_size=8)
    rec = fit(make_method("gml", GMLConfig(peers="gin,gcn"), peer=ModelSpec("gcn", 16, 2, dropout=0.0)),
              task, dataclasses.replace(OPT, epochs=3), progress=False).record
    assert set(rec["slots"]) == {"peer0_gin", "peer1_gcn"}
    assert not math.isnan(rec["combined"]["ensemble"]["test"])


def test_a_saved_cohort_teaches_an_mlp(tmp_path):
    from gkd_ext.train.cli import main
    import json
    models = tmp_path / "models"
    main(["--method", "gml", "--peers", "gcn,sage", "--epochs", "3", "--no-progress",
          "--save-models", str(models), "--out", str(tmp_path / "gml.json")])
    saved = json.loads((tmp_path / "gml.json").read_text())["runs"][0]["saved"]
    assert set(saved) == {"peer0_gcn", "peer1_sage", "ensemble"}
    for teacher in ("ensemble", "peer1_sage"):
        out = tmp_path / f"kd_{teacher}.json"
        main(["--method", "kd", "--teacher", "saved", "--teacher-ckpt", saved[teacher],
              "--student", "mlp", "--epochs", "2", "--no-progress", "--out", str(out)])
        run = json.loads(out.read_text())["runs"][0]
        t = run["slots"]["teacher"]
        assert t["source"].startswith("loaded") and t["role"] == "teacher"
        assert t["spec"]["arch"] == ("ensemble" if teacher == "ensemble" else "sage")
