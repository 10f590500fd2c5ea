"""Training-step benchmark: gkd_ext's GCN and GAT, and a GCN + LSP distillation step, against
the same architectures in PyG.

One step = zero_grad, forward in train mode (dropout on), loss, backward, Adam step. Cases:
  gcn          2-layer GCN, 64 hidden, cross-entropy over the training nodes
  gat          2-layer GAT, 8 heads x 8 hidden, 1 output head, ELU
  gcn+lsp      the GCN step plus beta * LSP(rbf, edge_mean) between its hidden layer and the
               hidden layer of a frozen teacher GCN, computed once (offline KD)
Impls: gkd_ext (``gkd_ext.nn.build_model``: ``inputs = model.prepare(graph)`` once, then
``logits, hidden = model(inputs, x)``; ``gkd_ext.lsp_loss``) and PyG, as a user would write it
with the same layers: ``torch_geometric.nn.GCNConv(cached=True)`` (normalisation computed once)
and ``GATConv(add_self_loops=False)`` on the graph with its self-loops added once, dropout
before every layer as in gkd_ext's models; its LSP term is the unfused PyG-style reference
(``gkd_ext.reference.lsp_reference_pyg``: E x D gathers, scatter softmax). PyG rows are skipped,
saying so, when torch_geometric is not installed; it is imported only here.
Check before timing: the PyG model is given the gkd_ext model's weights and both run in eval
mode on the same inputs; the logits (gcn, gat) or the loss (gcn+lsp) must agree.
Graphs: seeded contextual SBM graphs (``gkd_ext.data.csbm``), dense float32 features:
  photo   Amazon-Photo-sized: 7,650 nodes, about 238k directed edges, 745 features, 8 classes
          (the CPU default)
  arxiv   ogbn-arxiv-sized: 169,343 nodes, about 2.3M directed edges, 128 features, 40 classes
          (the CUDA default)
  tiny    1,000 nodes, about 10k directed edges, 32 features, 4 classes (smoke test)
Also printed (and in the JSON's meta): each impl's KD step time over its plain GCN step
(PERF.md: <= 1.2x for gkd_ext).

    python bench/bench_train.py                          # CPU, photo
    python bench/bench_train.py --device cuda --preset arxiv --json out.json
"""
from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

from common import Bench, parser, relative, try_import_pyg  # noqa: E402

import gkd_ext  # noqa: E402
from gkd_ext.data import csbm  # noqa: E402
from gkd_ext.nn import build_model  # noqa: E402
from gkd_ext.nn.functional import feature_dropout  # noqa: E402
from gkd_ext.reference import lsp_reference_pyg  # noqa: E402

# name: (nodes, classes, features, average degree (directed edges per node), homophily)
PRESETS = {
    "photo": (7650, 8, 745, 238162 / 7650, 0.83),
    "arxiv": (169343, 40, 128, 2330000 / 169343, 0.65),
    "tiny": (1000, 4, 32, 10.0, 0.8),
}
CASES = ("gcn", "gat", "gcn+lsp")
HIDDEN, GAT_HIDDEN, GAT_HEADS, BETA = 64, 8, 8, 1.0


class PygStack(nn.Module):
    """A stack of PyG convolutions with gkd_ext's dropout (dense or CSR input) and activation
    between layers; returns the logits and the hidden layers, as gkd_ext's models do."""

    def __init__(self, convs, dropout, activation):
        super().__init__()
        self.convs, self.dropout, self.activation = nn.ModuleList(convs), dropout, activation

    def forward(self, edge_index, x):
        hidden = []
        for i, conv in enumerate(self.convs):
            x = feature_dropout(x, self.dropout, self.training)
            x = conv(x, edge_index)
            if i < len(self.convs) - 1:
                hidden.append(x)
                x = self.activation(x)
        return x, hidden


def pyg_model(arch: str, ours: nn.Module, in_dim: int) -> nn.Module:
    """The PyG version of gkd_ext's GCN or GAT ``ours``: the same layer widths, heads, dropout,
    activations and weight layout (see copy_weights)."""
    from torch_geometric.nn import GATConv, GCNConv

    if arch == "gat":
        convs, d = [], in_dim
        for conv in ours.convs:
            last = conv is ours.convs[-1]
            convs.append(GATConv(d, conv.out_dim, heads=conv.heads, concat=not last,
                                 dropout=conv.attn_dropout, add_self_loops=False,
                                 negative_slope=conv.negative_slope))
            d = conv.out_dim * conv.heads
        return PygStack(convs, ours.dropout, F.elu)
    dims = [in_dim] + [conv.lin.out_features for conv in ours.convs]
    return PygStack([GCNConv(a, b, cached=True) for a, b in zip(dims[:-1], dims[1:])],
                    ours.dropout, torch.relu)


def lsp_kd(graph, teacher_h):
    """The KD term of the gcn+lsp step on a student's hidden layer ``h``: gkd_ext's fused LSP,
    and the unfused PyG-style one."""
    return (lambda h: gkd_ext.lsp_loss(graph, h, teacher_h, "rbf", "edge_mean"),
            lambda h: lsp_reference_pyg(graph, h, teacher_h, "rbf", "edge_mean"))


def copy_weights(ours: nn.Module, theirs: nn.Module) -> None:
    """gkd_ext's conv weights into the PyG model (same names and layouts: lin.weight, bias,
    att_src, att_dst); any shape difference is an error, never a broadcast."""
    with torch.no_grad():
        for a, b in zip(ours.convs, theirs.convs):
            for name in ("lin.weight", "bias", "att_src", "att_dst"):
                src, dst = a.get_parameter(name) if _has(a, name) else None, \
                    b.get_parameter(name) if _has(b, name) else None
                if src is None and dst is None:
                    continue
                if src is None or dst is None or src.shape != dst.shape:
                    raise RuntimeError(f"copy_weights: {name} differs: "
                                       f"{None if src is None else list(src.shape)} vs "
                                       f"{None if dst is None else list(dst.shape)}")
                dst.copy_(src)


def _has(module: nn.Module, name: str) -> bool:
    try:
        return module.get_parameter(name) is not None
    except AttributeError:
        return False


def make_step(params, forward, y, train_idx, kd=None):
    """One optimisation step of ``forward() -> (logits, hidden)``, with ``kd(hidden[0])``
    added to the loss when given. Returns (step, loss_fn)."""
    opt = torch.optim.Adam(params, lr=0.01, weight_decay=5e-4)

    def loss_fn():
        logits, hidden = forward()
        loss = F.cross_entropy(logits[train_idx], y[train_idx])
        return loss + BETA * kd(hidden[0]) if kd is not None else loss

    def step():
        opt.zero_grad(set_to_none=True)
        loss = loss_fn()
        loss.backward()
        opt.step()
        return loss.detach()

    return step, loss_fn


def eval_check(models, fn):
    """fn() with every model in eval mode (dropout off), restoring train mode after."""
    for m in models:
        m.eval()
    try:
        with torch.no_grad():
            return fn()
    finally:
        for m in models:
            m.train()


def make_parser() -> argparse.ArgumentParser:
    p = parser(__doc__.split("\n")[0])
    p.add_argument("--preset", choices=sorted(PRESETS), default=None,
                   help="graph size (default: photo on CPU, arxiv on CUDA)")
    p.add_argument("--cases", nargs="+", choices=CASES, default=list(CASES))
    p.add_argument("--seed", type=int, default=0)
    return p


def main() -> None:
    args = make_parser().parse_args()
    dev = torch.device(args.device)
    preset = args.preset or ("photo" if dev.type == "cpu" else "arxiv")
    pyg = try_import_pyg()   # before Bench, which freezes what is alive then out of the gc's view
    bench = Bench("train", args)
    n, classes, feats, degree, homophily = PRESETS[preset]
    data = csbm(n, classes, feats, homophily, degree, seed=args.seed)
    graph = data.graph.to(dev)
    graph.transpose()
    x, y = data.x.to(dev), data.y.to(dev)
    train_idx = data.train_mask.nonzero().view(-1).to(dev)
    print(f"# {preset}: {n:,} nodes, {graph.num_edges:,} directed edges, {feats} features, "
          f"{classes} classes, {train_idx.numel()} training nodes", flush=True)
    bench.meta.update(preset=preset, nodes=n, edges=graph.num_edges, features=feats, classes=classes)

    bench.meta["torch_geometric"] = getattr(pyg, "__version__", None)
    no_pyg = "torch_geometric is not installed (pip install torch-geometric)"
    torch.manual_seed(args.seed)

    teacher_h = None
    if "gcn+lsp" in args.cases:
        teacher = build_model("gcn", feats, HIDDEN, classes).to(dev).eval()
        with torch.no_grad():
            teacher_h = teacher(teacher.prepare(graph), x)[1][0]
        del teacher

    for case in args.cases:
        arch = "gat" if case == "gat" else "gcn"
        model = build_model(arch, feats, GAT_HIDDEN if arch == "gat" else HIDDEN, classes,
                            heads=GAT_HEADS).to(dev)
        inputs = model.prepare(graph)
        kd_ours, kd_pyg = lsp_kd(graph, teacher_h) if case == "gcn+lsp" else (None, None)
        step, loss_ours = make_step(model.parameters(), lambda: model(inputs, x), y, train_idx, kd_ours)
        label = f"{preset} {case} step"
        if pyg is None:
            bench.add(label, "gkd_ext", step, note="unchecked: no PyG model to compare with")
            bench.skip(label, "PyG" + (" + unfused LSP" if kd_pyg else ""), no_pyg, baseline=True)
            continue
        theirs = pyg_model(arch, model, feats).to(dev)
        copy_weights(model, theirs)
        # GCNConv normalises (self-loops, symmetric norm) itself and caches it; GAT gets the
        # self-loop graph that gkd_ext's prepare built, as PyG users add self-loops once.
        edge_index = (inputs.edge_index if arch == "gat" else graph.edge_index)
        step_pyg, loss_pyg = make_step(theirs.parameters(), lambda: theirs(edge_index, x), y,
                                       train_idx, kd_pyg)

        def check(model=model, theirs=theirs, loss_ours=loss_ours, loss_pyg=loss_pyg, case=case):
            if case == "gcn+lsp":
                return eval_check((model, theirs), lambda: relative(loss_ours(), loss_pyg()))
            return eval_check((model, theirs), lambda: relative(model(inputs, x)[0],
                                                                theirs(edge_index, x)[0]))
        bench.add(label, "gkd_ext", step, check=check, tol=1e-4)
        bench.add(label, "PyG" + (" + unfused LSP" if kd_pyg else ""), step_pyg, baseline=True)
        del model, theirs, inputs, edge_index

    ratios = {}
    ms = {(r.case.split()[1], r.impl.split()[0]): r.ms for r in bench.rows if r.status == "ok"}
    for impl in ("gkd_ext", "PyG"):
        plain, kd = ms.get(("gcn", impl)), ms.get(("gcn+lsp", impl))
        if plain and kd:
            ratios[impl] = kd / plain
    bench.meta["kd_step_over_plain_step"] = ratios
    bench.finish()
    for impl, r in ratios.items():
        print(f"KD step (gcn+lsp) / plain GCN step, {impl}: {r:.2f}x"
              + ("  (PERF.md target <= 1.2x)" if impl == "gkd_ext" else ""))


if __name__ == "__main__":
    main()
