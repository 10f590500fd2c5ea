"""The distillation loss modules share one signature and never detach: the caller decides
what is frozen."""
import pytest
import torch
import torch.nn.functional as F

from gkd_ext import Graph
from gkd_ext.losses import (ATLoss, DistillLoss, FitNetLoss, GCRDLoss, GSPLoss, LogitKDLoss,
                            LSPLoss)


def _graph(n=10, seed=0):
    gen = torch.Generator().manual_seed(seed)
    ei = torch.randint(0, n, (2, 4 * n), generator=gen)
    return Graph.from_edge_index(torch.cat([ei, ei.flip(0)], 1), n)


LOSSES = {
    "kd": lambda: LogitKDLoss(temperature=2.0),
    "fitnet": lambda: FitNetLoss(6, 8),
    "at": lambda: ATLoss(),
    "lsp": lambda: LSPLoss("rbf"),
    "gsp": lambda: GSPLoss("cosine"),
    "gcrd": lambda: GCRDLoss(6, 8, p=4),
}


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_one_signature_and_gradients_reach_both_sides(name):
    g = _graph()
    width_t = 6 if name == "kd" else 8
    s = torch.randn(10, 6, dtype=torch.float64, requires_grad=True)
    t = torch.randn(10, width_t, dtype=torch.float64, requires_grad=True)
    loss_fn = LOSSES[name]().double()
    assert isinstance(loss_fn, DistillLoss)
    loss = loss_fn(s, t, graph=g)
    loss.backward()
    assert s.grad is not None and s.grad.abs().sum() > 0
    # no detach inside: the teacher side receives gradients unless the caller detaches it
    assert t.grad is not None and t.grad.abs().sum() > 0
    sub = loss_fn(s, t, graph=g, nodes=torch.arange(0, 10, 2))
    assert sub.dim() == 0 and torch.isfinite(sub)


def test_logit_kd_is_batchmean_t_squared_kl():
    zs, zt = torch.randn(7, 4, dtype=torch.float64), torch.randn(7, 4, dtype=torch.float64)
    T = 3.0
    ref = (F.softmax(zt / T, -1) * (F.log_softmax(zt / T, -1) - F.log_softmax(zs / T, -1))).sum() / 7
    torch.testing.assert_close(LogitKDLoss(T)(zs, zt), ref * T * T)
    torch.testing.assert_close(LogitKDLoss(T, per_class_mean=True)(zs, zt), ref * T * T / 4)
    mask = torch.tensor([True, False] * 3 + [True])
    torch.testing.assert_close(LogitKDLoss(T)(zs, zt, nodes=mask), LogitKDLoss(T)(zs[mask], zt[mask]))
    with pytest.raises(ValueError, match="'temperature' must be > 0"):
        LogitKDLoss(0.0)
