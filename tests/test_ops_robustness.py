"""Robustness of the ops (issue 11): malformed CSR through every raw op, the public API and
Graph(validate=False), under torch.compile too, and the numerics cases (NaN in max, GSP with a
large common offset, double backward, sort-key overflow, non-2-D sparse input).

Each case runs in its own forked child (torch is imported once, in the parent), so a crash
(SIGSEGV, a glibc abort) or a hang fails that case instead of killing pytest. Every case is
classified as one of CLASSES:
  crash           the child died without reporting (a signal, or exit without a result)
  hang            no result within CASE_TIMEOUT_S (the child is killed)
  silently wrong  a malformed input returned without an error, or a result that disagrees
                  with the reference
  unclear error   an exception that is not a RuntimeError/ValueError/TypeError, or whose
                  message does not name the argument and say what was expected, or any
                  exception on a valid input
  clear error     what a malformed input must give
  correct         what a valid input must give
and the suite asserts that only the last two occur. The counts by class:

    python tests/test_ops_robustness.py --counts [--json PATH]

(pytest prints them in its terminal summary, too, when this file ran.)
"""
from __future__ import annotations

import argparse
import collections
import faulthandler
import json
import os
import re
import select
import signal
import sys
import time
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence

import pytest
import torch

if __name__ == "__main__":   # run as a script: the repository root, as pytest's rootdir gives it
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import gkd_ext  # noqa: E402
from gkd_ext import Graph  # noqa: E402

ops = torch.ops.gkd

CLASSES = ("crash", "hang", "silently wrong", "unclear error", "clear error", "correct")
CASE_TIMEOUT_S = 60
# "What was expected": a clear message states the rule the input broke.
EXPECTED = re.compile(r"must|outside \[|expected|not among|does not belong|needs|lie in|"
                      r"not implemented|at most|at least")
CLEAR_TYPES = ("RuntimeError", "ValueError", "TypeError")

TALLY: Dict[str, str] = {}   # case name -> class, for the terminal summary (conftest.py)


@dataclass
class Case:
    name: str
    group: str
    run: Callable[[], object]
    expect: str                     # "error" | "value" | "either" (correct or a clear error)
    names: Sequence[str] = ()       # arguments a clear message may name (any one of them)
    check: Optional[Callable[[object], Optional[str]]] = None   # None if correct, else why not


# ------------------------------------------------------------------ the base graph
# 6 nodes, 12 edges (one duplicated: 0 -> 1 twice, so a t_perm repeat can keep both endpoints),
# every node with an in-edge, sorted by (destination, source) as from_edge_index builds it.
N, D = 6, 4
EDGES = [(0, 1), (0, 1), (1, 2), (2, 3), (3, 4), (4, 5), (5, 0), (0, 2), (2, 4), (4, 0),
         (1, 3), (3, 5)]
OTHER = [(b, a) for a, b in EDGES]   # the reversed graph: same N and E, another transpose


def base_graph(edges=EDGES) -> Graph:
    return Graph.from_edge_index(torch.tensor(edges).T.contiguous(), N)


def base():
    """Tensors every op case uses (built in the child: nothing is shared)."""
    g = base_graph()
    torch.manual_seed(0)
    t = tuple(x.clone() for x in g.transpose())
    E = g.num_edges
    d = dict(g=g, rp=g.rowptr.clone(), col=g.col.clone(), t=t, E=E,
             x=torch.randn(N, D, dtype=torch.float64), value=torch.rand(E, dtype=torch.float64),
             value2=torch.rand(E, 2, dtype=torch.float64), grad=torch.randn(N, D, dtype=torch.float64),
             a=torch.randn(N, D, dtype=torch.float64), b=torch.randn(N, D, dtype=torch.float64),
             hs=torch.randn(N, 3, dtype=torch.float64), ht=torch.randn(N, 5, dtype=torch.float64))
    d["arg"] = ops.spmm(g.rowptr, g.col, d["value"], d["x"], "max")[1]
    _, d["stats"], d["logits"] = ops.lsp(g.rowptr, g.col, d["hs"], d["ht"], "rbf", 0.5)
    d["gkl"] = torch.ones(N, dtype=torch.float64)
    return d


def _set(t, i, v):
    t = t.clone()
    t[i] = v
    return t


def _swap(t, i, j):
    t = t.clone()
    t[i], t[j] = t[j].clone(), t[i].clone()
    return t


# Malformed forward CSRs: (name, (rowptr, col, E) -> (rowptr, col), arguments a message names).
FWD_FAULTS = [
    ("rowptr-starts-at-1", lambda rp, c, E: (_set(rp, 0, 1), c), ("rowptr",)),
    ("rowptr-negative-start", lambda rp, c, E: (_set(rp, 0, -3), c), ("rowptr",)),
    ("rowptr-decreasing", lambda rp, c, E: (_set(rp, 2, int(rp[3]) + 1), c), ("rowptr",)),
    ("rowptr-decreasing-huge", lambda rp, c, E: (_set(rp, 2, 10**12), c), ("rowptr",)),
    ("rowptr-ends-short", lambda rp, c, E: (_set(rp, -1, E - 1), c), ("rowptr",)),
    ("rowptr-ends-long", lambda rp, c, E: (_set(rp, -1, E + 5), c), ("rowptr",)),
    ("rowptr-ends-huge", lambda rp, c, E: (_set(rp, -1, 10**12), c), ("rowptr",)),
    ("rowptr-int64-max", lambda rp, c, E: (_set(rp, -2, 2**63 - 1), c), ("rowptr",)),
    ("rowptr-all-zero", lambda rp, c, E: (torch.zeros_like(rp), c), ("rowptr",)),
    ("col-huge", lambda rp, c, E: (rp, _set(c, 2, 10**9)), ("col",)),
    ("col-negative", lambda rp, c, E: (rp, _set(c, 0, -1)), ("col",)),
    ("col-equals-num-src", lambda rp, c, E: (rp, _set(c, E - 1, N)), ("col",)),
    ("col-int64-min", lambda rp, c, E: (rp, _set(c, 1, -2**63)), ("col",)),
]


def _other_transpose(t, E):
    return tuple(x.clone() for x in base_graph(OTHER).transpose())


def _repeat_duplicate(t, E):
    # The two 0 -> 1 edges sit next to each other in source row 0: mapping both transposed
    # positions to the same edge keeps every endpoint right, only the permutation breaks.
    trp, tc, tp = t
    k = int(trp[0])
    return trp, tc, _set(tp, k + 1, int(tp[k]))


# Malformed transposes: (name, (t, E) -> t, arguments a message names).
T_FAULTS = [
    ("t_rowptr-starts-at-1", lambda t, E: (_set(t[0], 0, 1), t[1], t[2]), ("t_rowptr",)),
    ("t_rowptr-decreasing", lambda t, E: (_set(t[0], 2, int(t[0][3]) + 1), t[1], t[2]), ("t_rowptr",)),
    ("t_rowptr-ends-short", lambda t, E: (_set(t[0], -1, E - 1), t[1], t[2]), ("t_rowptr",)),
    ("t_rowptr-huge", lambda t, E: (_set(t[0], 1, 10**12), t[1], t[2]), ("t_rowptr",)),
    ("t_col-huge", lambda t, E: (t[0], _set(t[1], 0, 10**9), t[2]), ("t_col",)),
    ("t_col-negative", lambda t, E: (t[0], _set(t[1], 1, -1), t[2]), ("t_col",)),
    ("t_perm-huge", lambda t, E: (t[0], t[1], _set(t[2], 0, 10**9)), ("t_perm",)),
    ("t_perm-negative", lambda t, E: (t[0], t[1], _set(t[2], 3, -1)), ("t_perm",)),
    ("t_perm-repeat", _repeat_duplicate, ("t_perm",)),
    ("t_perm-swapped-rows", lambda t, E: (t[0], t[1], _swap(t[2], 0, E - 1)), ("t_perm", "transpose")),
    ("t_col-swapped-rows", lambda t, E: (t[0], _swap(t[1], 2, E - 2), t[2]), ("t_col", "t_perm", "transpose")),
    ("transpose-of-another-graph", _other_transpose, ("transpose", "t_perm", "t_col")),
]

# Shapes and dtypes (the O(1) entry checks): (name, op variant, (d) -> call, names).
SHAPE_FAULTS = [
    ("rowptr-empty", lambda d: ops.spmm(d["rp"][:0], d["col"], None, d["x"], "sum"), ("rowptr",)),
    ("rowptr-int32", lambda d: ops.spmm(d["rp"].int(), d["col"], None, d["x"], "sum"), ("rowptr",)),
    ("col-2d", lambda d: ops.spmm(d["rp"], d["col"].view(2, -1), None, d["x"], "sum"), ("col",)),
    ("col-int32", lambda d: ops.sddmm(d["rp"], d["col"].int(), d["a"], d["b"], 1), ("col",)),
    ("t_rowptr-short", lambda d: ops.check_csr(d["rp"], d["col"], N, d["t"][0][:-1], *d["t"][1:]),
     ("t_rowptr",)),
    ("t_perm-short", lambda d: ops.spmm_backward(
        d["rp"], d["col"], None, d["x"], d["grad"], d["arg"][:0], "sum", d["t"][0], d["t"][1],
        d["t"][2][:-1], True, False), ("t_perm",)),
    ("t-partly-given", lambda d: ops.check_csr(d["rp"], d["col"], N, d["t"][0]),
     ("t_rowptr", "t_col", "t_perm")),
    ("arg-wrong-shape", lambda d: ops.spmm_backward(
        d["rp"], d["col"], d["value"], d["x"], d["grad"], d["arg"][:-1], "max", *d["t"], True,
        True), ("arg",)),
]

# Raw-op variants: (name, walks the transpose, (d, rowptr, col, t) -> call).
RAW_OPS = [
    ("spmm-sum", False, lambda d, rp, c, t: ops.spmm(rp, c, None, d["x"], "sum")),
    ("spmm-max-value", False, lambda d, rp, c, t: ops.spmm(rp, c, d["value"], d["x"], "max")),
    ("spmm-mean-value", False, lambda d, rp, c, t: ops.spmm(rp, c, d["value"], d["x"], "mean")),
    ("spmm-2-heads", False, lambda d, rp, c, t: ops.spmm(rp, c, d["value2"], d["x"], "sum")),
    ("spmm_backward-x-value", True, lambda d, rp, c, t: ops.spmm_backward(
        rp, c, d["value"], d["x"], d["grad"], d["arg"][:0], "sum", *t, True, True)),
    ("spmm_backward-max", True, lambda d, rp, c, t: ops.spmm_backward(
        rp, c, d["value"], d["x"], d["grad"], d["arg"], "max", *t, True, True)),
    ("spmm_backward-mean-x", True, lambda d, rp, c, t: ops.spmm_backward(
        rp, c, None, d["x"], d["grad"], d["arg"][:0], "mean", *t, True, False)),
    ("spmm_backward-value-only", False, lambda d, rp, c, t: ops.spmm_backward(
        rp, c, d["value"], d["x"], d["grad"], d["arg"][:0], "sum", None, None, None, False, True)),
    ("sddmm", False, lambda d, rp, c, t: ops.sddmm(rp, c, d["a"], d["b"], 1)),
    ("sddmm-2-heads-transpose", True, lambda d, rp, c, t: ops.sddmm(rp, c, d["a"], d["b"], 2, *t)),
    ("lsp", False, lambda d, rp, c, t: ops.lsp(rp, c, d["hs"], d["ht"], "rbf", 0.5)),
    ("lsp-cosine", False, lambda d, rp, c, t: ops.lsp(rp, c, d["hs"], d["ht"][:, :3], "cosine", 0.0)),
    ("lsp_backward", True, lambda d, rp, c, t: ops.lsp_backward(
        rp, c, d["hs"], d["ht"], d["stats"], d["logits"], d["gkl"], "rbf", 0.5, *t, True, True)),
    ("check_csr", True, lambda d, rp, c, t: ops.check_csr(rp, c, N, *t)),
]


def raw_cases() -> List[Case]:
    cases = []
    for op_name, walks_t, call in RAW_OPS:
        for fault, make, names in FWD_FAULTS:
            def run(call=call, make=make):
                d = base()
                rp, c = make(d["rp"], d["col"], d["E"])
                return call(d, rp, c, d["t"])
            cases.append(Case(f"raw/{op_name}/{fault}", "raw op", run, "error", names))
        if not walks_t:
            continue
        for fault, make, names in T_FAULTS:
            def run(call=call, make=make):
                d = base()
                return call(d, d["rp"], d["col"], make(d["t"], d["E"]))
            cases.append(Case(f"raw/{op_name}/{fault}", "raw op", run, "error", names))
    for fault, call, names in SHAPE_FAULTS:
        cases.append(Case(f"raw/shape/{fault}", "raw op", lambda call=call: call(base()), "error",
                          names))
    return cases


# ------------------------------------------------------------------ public API
def _gat_forward(g):
    from gkd_ext.nn import build_model
    torch.manual_seed(0)
    model = build_model("gat", D, 4, 3, num_layers=2, heads=2).double()
    return model(model.prepare(g), torch.randn(g.num_src, D, dtype=torch.float64))[0]


def _grad(t):
    return t.clone().requires_grad_(True)


# (name, (graph, d) -> result); names in a message: the graph's rowptr/col (as Graph.validate
# names them) or the op's argument.
PUBLIC = [
    ("spmm", lambda g, d: gkd_ext.spmm(g, d["x"])),
    ("spmm-max", lambda g, d: gkd_ext.spmm(g, d["x"], reduce="max")),
    ("spmm-backward", lambda g, d: gkd_ext.spmm(g, _grad(d["x"])).sum().backward()),
    ("sddmm", lambda g, d: gkd_ext.sddmm(g, d["a"], d["b"])),
    ("sddmm-backward", lambda g, d: gkd_ext.sddmm(g, _grad(d["a"]), _grad(d["b"])).sum().backward()),
    ("lsp_loss", lambda g, d: gkd_ext.lsp_loss(g, d["hs"], d["ht"])),
    ("lsp_loss-backward", lambda g, d: gkd_ext.lsp_loss(g, _grad(d["hs"]), d["ht"]).backward()),
    ("gat-forward", lambda g, d: _gat_forward(g)),
]

# Transposes planted into a Graph: the backward passes that walk them must refuse them.
PUBLIC_T = [
    ("spmm-backward", lambda g, d: gkd_ext.spmm(g, _grad(d["x"]), d["value"]).sum().backward()),
    ("sddmm-backward", lambda g, d: gkd_ext.sddmm(g, d["a"], _grad(d["b"])).sum().backward()),
    ("lsp_loss-backward", lambda g, d: gkd_ext.lsp_loss(g, _grad(d["hs"]), d["ht"]).backward()),
]


def public_cases() -> List[Case]:
    cases = []
    for fault, make, names in FWD_FAULTS:
        def build(make=make, validate=False):
            d = base()
            rp, c = make(d["rp"], d["col"], d["E"])
            return Graph(rp, c, N, validate=validate), d
        # Graph's own check names 'rowptr' or 'col (sources)'.
        cases.append(Case(f"graph/validate/{fault}", "Graph", lambda build=build: build(validate=True),
                          "error", names))
        for api, call in PUBLIC:
            def run(build=build, call=call):
                g, d = build()
                return call(g, d)
            cases.append(Case(f"public/{api}/{fault}", "public API", run, "error", names))
    for fault, make, names in T_FAULTS:
        for api, call in PUBLIC_T:
            def run(make=make, call=call):
                d = base()
                g = Graph(d["rp"], d["col"], N)
                g._transpose = make(d["t"], d["E"])
                return call(g, d)
            cases.append(Case(f"public-transpose/{api}/{fault}", "public API", run, "error",
                              names + ("transpose",)))

    # A Graph edited in place after its transpose was cached: the stale transpose is refused.
    def edited(call):
        def run():
            d = base()
            g = base_graph()
            g.transpose()
            g.col[0], g.col[5] = int(g.col[5]), int(g.col[0])   # both still in range
            return call(g, d)
        return run
    for api, call in PUBLIC_T:
        cases.append(Case(f"public/edited-after-transpose/{api}", "public API", edited(call),
                          "error", ("transpose", "t_perm", "t_col")))

    # Graph.from_edge_index with indices out of range.
    for name, ei, shape in [("src-huge", [[10**9], [0]], 3), ("dst-negative", [[0], [-1]], 3),
                            ("src-equals-n", [[3, 0], [0, 1]], 3)]:
        cases.append(Case(f"graph/from_edge_index/{name}", "Graph",
                          lambda ei=ei, shape=shape: Graph.from_edge_index(torch.tensor(ei), shape),
                          "error", ("edge_index", "source", "target", "src", "dst")))
    return cases


# ------------------------------------------------------------------ torch.compile
def compile_cases() -> List[Case]:
    def repro():
        return gkd_ext.spmm(Graph(torch.tensor([0, 1, 2, 3]), torch.tensor([0, 1, 10**9]), 3,
                                  validate=False), torch.randn(3, 64))

    def compiled(backend, fn_args):
        def run():
            fn, args = fn_args()
            return torch.compile(fn, fullgraph=True, backend=backend)(*args)
        return run

    def raw_spmm():
        return (lambda rp, c, x: ops.spmm(rp, c, None, x, "sum")[0],
                (torch.tensor([0, 1, 2, 3]), torch.tensor([0, 1, 10**9]), torch.randn(3, 64)))

    def raw_lsp():
        d = base()
        rp = _set(d["rp"], 2, 10**12)
        return (lambda rp, c, a, b: ops.lsp(rp, c, a, b, "rbf", 0.5)[0],
                (rp, d["col"], d["hs"], d["ht"]))

    def raw_transpose():
        d = base()
        t = _other_transpose(d["t"], d["E"])
        return (lambda rp, c, x, g, *t: ops.spmm_backward(rp, c, None, x, g, x.new_empty(0).long(),
                                                          "sum", *t, True, False)[0],
                (d["rp"], d["col"], d["x"], d["grad"], *t))

    return [
        Case("compile/issue-repro (public, validate=False)", "compile",
             lambda: torch.compile(lambda: repro(), fullgraph=True, backend="aot_eager")(),
             "error", ("col",)),
        Case("compile/raw-spmm-col-huge", "compile", compiled("aot_eager", raw_spmm), "error", ("col",)),
        Case("compile/raw-lsp-rowptr", "compile", compiled("aot_eager", raw_lsp), "error", ("rowptr",)),
        Case("compile/raw-spmm_backward-other-transpose", "compile",
             compiled("aot_eager", raw_transpose), "error", ("transpose", "t_perm", "t_col")),
        Case("compile/inductor-raw-spmm-col-huge", "compile", compiled("inductor", raw_spmm),
             "error", ("col",)),
    ]


# ------------------------------------------------------------------ numerics
def _close(out, ref, rtol=1e-6, atol=1e-6) -> Optional[str]:
    if out.shape != ref.shape:
        return f"shape {list(out.shape)} != {list(ref.shape)}"
    if not torch.equal(torch.isnan(out), torch.isnan(ref)):
        return f"NaN pattern differs: {out.tolist()} vs {ref.tolist()}"
    fin = ~torch.isnan(ref)
    if not torch.allclose(out[fin], ref[fin], rtol=rtol, atol=atol):
        return f"max |diff| {float((out[fin] - ref[fin]).abs().max()):.3g}"
    return None


def _amax(g: Graph, x, value=None):
    msg = x[g.col] * (1 if value is None else value.view(-1, 1))
    idx = g.row.view(-1, 1).expand_as(msg)
    return x.new_zeros(g.num_dst, x.size(1)).scatter_reduce(0, idx, msg, "amax", include_self=False)


def nan_cases() -> List[Case]:
    cases = []
    # Node 1 has in-edges from 0 (twice) and the row of x that holds NaN is put at the first,
    # a middle or the last edge of a row, and as a NaN edge value.
    for where, src in (("first-edge", 0), ("last-edge", 5), ("middle", 4)):
        def run(src=src):
            g = base_graph()
            x = torch.randn(N, D, dtype=torch.float64)
            x[src, 1] = float("nan")
            return gkd_ext.spmm(g, x, reduce="max"), _amax(g, x), \
                gkd_ext.reference.spmm_reference(g, x, reduce="max")
        cases.append(Case(f"numerics/spmm-max-nan-{where}", "numerics", run, "value",
                          check=lambda r: _close(r[0], r[1]) or _close(r[2], r[1])))
    for order in ("forward", "reversed"):
        def run(order=order):
            # One destination, three sources: the same edges in both orders, the NaN in the middle.
            src = [0, 1, 2] if order == "forward" else [2, 1, 0]
            g = Graph(torch.tensor([0, 3]), torch.tensor(src), 3)
            x = torch.tensor([[1.0, -5.0], [float("nan"), 2.0], [3.0, float("nan")]])
            return gkd_ext.spmm(g, x, reduce="max"), _amax(g, x)
        cases.append(Case(f"numerics/spmm-max-nan-order-{order}", "numerics", run, "value",
                          check=lambda r: _close(r[0], r[1])))

    def nan_value():
        g = base_graph()
        x = torch.randn(N, D, dtype=torch.float64)
        v = torch.rand(g.num_edges, dtype=torch.float64)
        v[3] = float("nan")
        return gkd_ext.spmm(g, x, v, reduce="max"), _amax(g, x, v)
    cases.append(Case("numerics/spmm-max-nan-edge-value", "numerics", nan_value, "value",
                      check=lambda r: _close(r[0], r[1])))

    def nan_float32():
        g = base_graph()
        x = torch.randn(N, 64)
        x[4, ::3] = float("nan")
        return gkd_ext.spmm(g, x, reduce="max"), _amax(g, x)
    cases.append(Case("numerics/spmm-max-nan-float32-wide", "numerics", nan_float32, "value",
                      check=lambda r: _close(r[0], r[1])))
    return cases


def _gsp64(h_s, h_t, kernel, gamma):
    """The GSP loss in float64 from explicit differences (no |a|²+|b|²-2ab identity)."""
    def k(h):
        d2 = ((h[:, None, :] - h[None, :, :]) ** 2).sum(-1)
        return d2.sqrt() if kernel == "l2" else torch.exp(-gamma * d2)
    return ((k(h_s.double()) - k(h_t.double())) ** 2).mean()


def gsp_cases() -> List[Case]:
    cases = []
    for kernel in ("l2", "rbf"):
        for offset, spread in ((1000.0, 0.05), (1e4, 1.0), (-3e3, 0.2)):
            def run(kernel=kernel, offset=offset, spread=spread):
                torch.manual_seed(1)
                h_s = offset + spread * torch.randn(40, 8)
                h_t = torch.randn(40, 8)
                kw = {"gamma": 1.0} if kernel == "rbf" else {}
                out = gkd_ext.gsp_loss(h_s, h_t, kernel, **kw)
                ref_py = gkd_ext.reference.gsp_dense(h_s, h_t, kernel, **kw)
                return out, ref_py, _gsp64(h_s, h_t, kernel, 1.0)
            cases.append(Case(f"numerics/gsp-{kernel}-offset-{offset:g}+-{spread:g}-float32",
                              "numerics", run, "value",
                              check=lambda r: _close(r[0].double(), r[2], rtol=2e-3, atol=1e-5)
                              or _close(r[1].double(), r[2], rtol=2e-3, atol=1e-5)))

    def grad_offset():
        torch.manual_seed(2)
        h = (1000.0 + 0.05 * torch.randn(30, 6)).requires_grad_(True)
        h_t = torch.randn(30, 6)
        gkd_ext.gsp_loss(h, h_t, "rbf", gamma=1.0).backward()
        h64 = h.detach().double().requires_grad_(True)
        _gsp64(h64, h_t, "rbf", 1.0).backward()
        return h.grad.double(), h64.grad
    cases.append(Case("numerics/gsp-rbf-offset-gradient-float32", "numerics", grad_offset, "value",
                      check=lambda r: _close(r[0], r[1], rtol=2e-2, atol=1e-4 * float(r[1].abs().max()))))
    return cases


def _double_backward_case(name, make_loss, make_ref):
    """Second-order gradient: correct (against the pure-PyTorch reference) or a clear error."""
    def run():
        torch.manual_seed(3)
        loss, inputs = make_loss()
        grads = torch.autograd.grad(loss, inputs, create_graph=True)
        second = torch.autograd.grad(sum((g * g).sum() for g in grads), inputs, allow_unused=True)
        ref_loss, ref_inputs = make_ref()
        ref_grads = torch.autograd.grad(ref_loss, ref_inputs, create_graph=True)
        ref_second = torch.autograd.grad(sum((g * g).sum() for g in ref_grads), ref_inputs,
                                         allow_unused=True)
        return second, ref_second

    def check(r):
        for got, ref in zip(*r):
            if got is None or ref is None:
                if got is None and ref is not None and bool(ref.abs().max() > 0):
                    return "a second-order gradient is None"
                continue
            bad = _close(got, ref, rtol=1e-6, atol=1e-9)
            if bad:
                return bad
        return None
    return Case(f"numerics/double-backward-{name}", "numerics", run, "either",
                ("double backward", "gradients of gradients"), check)


def double_backward_cases() -> List[Case]:
    from gkd_ext import reference as R

    def pair(fn, ref_fn, *shapes):
        def make(f):
            def build():
                torch.manual_seed(4)
                ts = [torch.randn(*s, dtype=torch.float64, requires_grad=True) for s in shapes]
                return f(*ts), ts
            return build
        return make(fn), make(ref_fn)

    g = base_graph()
    g.transpose()
    cases = [
        _double_backward_case("spmm", *pair(lambda x: (gkd_ext.spmm(g, x) ** 2).sum(),
                                            lambda x: (R.spmm_reference(g, x) ** 2).sum(), (N, D))),
        _double_backward_case("spmm-value", *pair(
            lambda x, v: (gkd_ext.spmm(g, x, v) ** 2).sum(),
            lambda x, v: (R.spmm_reference(g, x, v) ** 2).sum(), (N, D), (g.num_edges,))),
        _double_backward_case("sddmm", *pair(lambda a, b: (gkd_ext.sddmm(g, a, b) ** 2).sum(),
                                             lambda a, b: (R.sddmm_reference(g, a, b).view(-1) ** 2).sum(),
                                             (N, D), (N, D))),
        _double_backward_case("lsp_loss", *pair(
            lambda s: gkd_ext.lsp_loss(g, s, torch.ones(N, 3, dtype=torch.float64)),
            lambda s: R.lsp_reference_pyg(g, s, torch.ones(N, 3, dtype=torch.float64), "rbf",
                                          "node_mean"), (N, 3))),
        _double_backward_case("gsp_loss-rbf", *pair(
            lambda s, t: gkd_ext.gsp_loss(s, t, "rbf"),
            lambda s, t: R.gsp_dense(s, t, "rbf"), (7, 3), (7, 4))),
        _double_backward_case("contrastive_loss", *pair(
            lambda s, t: gkd_ext.contrastive_loss(s, t),
            lambda s, t: R.infonce_dense(s, t), (7, 4), (7, 4))),
    ]
    return cases


def graph_numerics_cases() -> List[Case]:
    cases = []
    for num_src, num_dst in ((2**62, 4), (2**61 + 7, 9), (3 * 2**40, 2**23 + 1)):
        def run(num_src=num_src, num_dst=num_dst):
            src = [num_src - 1, 0, num_src // 3, num_src - 1, 5, num_src // 3]
            dst = [num_dst - 1, num_dst - 1, 0, 0, 1, num_dst - 1]
            g = Graph.from_edge_index(torch.tensor([src, dst]), (num_src, num_dst))
            order = sorted(range(len(src)), key=lambda e: (dst[e], src[e], e))
            return g, order, src, dst
        def check(r):
            g, order, src, dst = r
            if g.perm.tolist() != order:
                return f"perm {g.perm.tolist()} != {order}"
            if g.col.tolist() != [src[e] for e in order] or g.row.tolist() != [dst[e] for e in order]:
                return "edges mislabelled"
            return None
        cases.append(Case(f"numerics/from_edge_index-key-overflow-{num_src}x{num_dst}", "numerics",
                          run, "value", check=check))

    def sparse3d_torch():
        i = torch.tensor([[0, 1], [1, 0], [0, 2]])
        return Graph.from_sparse(torch.sparse_coo_tensor(i, torch.ones(2), (2, 2, 3)))

    def hybrid_torch():
        i = torch.tensor([[0, 1], [1, 0]])
        return Graph.from_sparse(torch.sparse_coo_tensor(i, torch.ones(2, 4), (2, 2, 4)))

    def scipy_nd(shape):
        def run():
            import numpy as np
            import scipy.sparse as sp
            coords = tuple(np.zeros(1, dtype=np.int64) for _ in shape)
            return Graph.from_sparse(sp.coo_array((np.ones(1), coords), shape=shape))
        return run
    cases += [
        Case("numerics/from_sparse-torch-3d-coo", "numerics", sparse3d_torch, "error", ("2-D",)),
        Case("numerics/from_sparse-torch-hybrid-coo", "numerics", hybrid_torch, "error", ("2-D",)),
        Case("numerics/from_sparse-scipy-3d", "numerics", scipy_nd((2, 3, 4)), "error", ("2-D",)),
        Case("numerics/from_sparse-scipy-1d", "numerics", scipy_nd((5,)), "error", ("2-D",)),
    ]
    return cases


def all_cases() -> List[Case]:
    cases = (raw_cases() + public_cases() + compile_cases() + nan_cases() + gsp_cases()
             + double_backward_cases() + graph_numerics_cases())
    names = [c.name for c in cases]
    assert len(set(names)) == len(names), "duplicate case names"
    return cases


# ------------------------------------------------------------------ running and classifying
def _result(case: Case) -> dict:
    try:
        out = case.run()
        res = {"status": "returned"}
        if case.check is not None:
            res["problem"] = case.check(out)
    except BaseException as exc:   # noqa: B902 (everything is a result here)
        res = {"status": "raised", "type": type(exc).__name__,
               "mro": [k.__name__ for k in type(exc).__mro__], "message": str(exc)}
    return res


def _fork(cases: Sequence[Case]):
    """A child that runs the cases in order and writes one JSON line per result: (pid, fd)."""
    r, w = os.pipe()
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:   # pragma: no cover (the child)
        os.close(r)
        faulthandler.disable()   # a crash is the parent's finding; no traceback dump here
        try:
            torch.set_num_threads(1)   # the parent's OpenMP pool does not exist in this child
            for case in cases:
                data = (json.dumps(_result(case), default=str) + "\n").encode()
                while data:
                    data = data[os.write(w, data):]
        finally:
            os._exit(0)
    os.close(w)
    return pid, r


def _exit_detail(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"killed by signal {signal.Signals(os.WTERMSIG(status)).name}"
    return f"exit status {os.WEXITSTATUS(status)} without a result"


def run_batch(cases: Sequence[Case], timeout: float = CASE_TIMEOUT_S) -> List[dict]:
    """Every case's result. The cases run in order in one forked child (cheap: no fork per
    case); when the child dies or a case runs past `timeout`, that case gets status 'crash' or
    'hang' and a new child goes on from the next one. A crash or hang is then confirmed by
    running the case alone (run_case), so it is not blamed on an earlier case's damage."""
    results: List[Optional[dict]] = [None] * len(cases)
    start = 0
    while start < len(cases):
        pid, r = _fork(cases[start:])
        buf, i, deadline = b"", start, time.monotonic() + timeout
        while i < len(cases):
            left = deadline - time.monotonic()
            ready = select.select([r], [], [], max(left, 0))[0] if left > 0 else []
            if not ready:
                os.kill(pid, signal.SIGKILL)
                results[i] = {"status": "hang"}
                break
            chunk = os.read(r, 1 << 16)
            if not chunk:
                break
            buf += chunk
            while b"\n" in buf and i < len(cases):
                line, buf = buf.split(b"\n", 1)
                results[i] = json.loads(line)
                i += 1
                deadline = time.monotonic() + timeout
        os.close(r)
        _, status = os.waitpid(pid, 0)
        if i < len(cases) and results[i] is None:
            results[i] = {"status": "crash", "detail": _exit_detail(status)}
        start = i + 1
    for i, res in enumerate(results):
        if res["status"] in ("crash", "hang"):
            results[i] = run_case(cases[i], timeout)
    return results


def run_case(case: Case, timeout: float = CASE_TIMEOUT_S) -> dict:
    """Runs one case alone in a forked child: its result, or status 'crash' / 'hang'."""
    pid, r = _fork([case])
    chunks, deadline, hung = [], time.monotonic() + timeout, False
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            hung = True
            break
        if select.select([r], [], [], left)[0]:
            chunk = os.read(r, 1 << 16)
            if not chunk:
                break
            chunks.append(chunk)
    os.close(r)
    if hung:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        return {"status": "hang"}
    _, status = os.waitpid(pid, 0)
    if not chunks:
        return {"status": "crash", "detail": _exit_detail(status)}
    return json.loads(b"".join(chunks))


def _names(message: str, name: str) -> bool:
    return re.search(r"(?<![A-Za-z_])" + re.escape(name) + r"(?![A-Za-z_])", message) is not None


def classify(case: Case, res: dict):
    """(class, detail)."""
    status = res["status"]
    if status in ("crash", "hang"):
        return status, res.get("detail", "")
    if status == "raised":
        msg = f"{res['type']}: {res['message'][:400]}"
        if case.expect == "value":
            return "unclear error", "raised on a valid input: " + msg
        if not set(CLEAR_TYPES) & set(res["mro"]):
            return "unclear error", msg
        if not any(_names(res["message"], n) for n in case.names):
            return "unclear error", f"names none of {list(case.names)}: {msg}"
        if not EXPECTED.search(res["message"]):
            return "unclear error", f"does not say what was expected: {msg}"
        return "clear error", msg
    if case.expect == "error":
        return "silently wrong", "returned without an error"
    problem = res.get("problem")
    return ("silently wrong", problem) if problem else ("correct", "")


def run_all(cases: Sequence[Case], verbose: bool = False):
    rows = []
    for case, res in zip(cases, run_batch(cases)):
        cls, detail = classify(case, res)
        rows.append(dict(name=case.name, group=case.group, cls=cls, detail=detail))
        if verbose and cls not in ("clear error", "correct"):
            print(f"{cls:>15}  {case.name}: {detail}", flush=True)
    return rows


def format_counts(rows) -> str:
    total = collections.Counter(r["cls"] for r in rows)
    lines = [f"ops robustness: {len(rows)} cases: " + ", ".join(f"{c} {total[c]}" for c in CLASSES)]
    groups = collections.defaultdict(collections.Counter)
    for r in rows:
        groups[r["group"]][r["cls"]] += 1
    for g, c in groups.items():
        lines.append(f"  {g:<11} {sum(c.values()):>4}: " + ", ".join(f"{k} {c[k]}" for k in CLASSES if c[k]))
    return "\n".join(lines)


# ------------------------------------------------------------------ pytest
CASES = all_cases()


_RESULTS: Dict[str, dict] = {}


def _result_of(case: Case) -> dict:
    # All cases run once, in one batch (run_batch), at the first test that asks.
    if not _RESULTS:
        _RESULTS.update(zip([c.name for c in CASES], run_batch(CASES)))
    return _RESULTS[case.name]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_case(case):
    cls, detail = classify(case, _result_of(case))
    TALLY[case.name] = (case.group, cls)
    assert cls in ("clear error", "correct"), f"{cls}: {detail}"


def test_enough_cases():
    assert len(CASES) >= 300
    # Every raw op that walks a CSR meets every forward fault, and every transpose walker
    # every transpose fault.
    for op in ("spmm", "spmm_backward", "sddmm", "lsp", "lsp_backward", "check_csr"):
        assert sum(c.name.startswith(f"raw/{op}") for c in CASES) >= len(FWD_FAULTS), op


def test_classifier_catches_failures():
    # The harness itself: a crash, a silent return and a vague error are not passed.
    crash = Case("crash", "self", lambda: os.kill(os.getpid(), signal.SIGSEGV), "error", ("x",))
    assert classify(crash, run_case(crash))[0] == "crash"
    quiet = Case("quiet", "self", lambda: 1, "error", ("x",))
    assert classify(quiet, run_case(quiet))[0] == "silently wrong"
    vague = Case("vague", "self", lambda: [][1], "error", ("x",))
    assert classify(vague, run_case(vague))[0] == "unclear error"
    hang = Case("hang", "self", lambda: time.sleep(30), "error", ("x",))
    assert classify(hang, run_case(hang, timeout=0.5))[0] == "hang"
    # In a batch, a crash or hang is pinned on its case and the next cases still run.
    ok = Case("ok", "self", lambda: 2, "value")
    batch = run_batch([quiet, crash, ok, hang, ok], timeout=1)
    assert [classify(c, r)[0] for c, r in zip([quiet, crash, ok, hang, ok], batch)] == \
        ["silently wrong", "crash", "correct", "hang", "correct"]


def summary_lines() -> List[str]:
    """For conftest's terminal summary: counts by class over the cases that ran."""
    if not TALLY:
        return []
    rows = [dict(name=n, group=g, cls=c) for n, (g, c) in TALLY.items()]
    return format_counts(rows).splitlines()


def main() -> None:
    p = argparse.ArgumentParser(description="Run the ops robustness cases; print counts by class.")
    p.add_argument("--counts", action="store_true", help="print the counts by class (the default)")
    p.add_argument("--json", metavar="PATH", help="also write every case's class as JSON")
    p.add_argument("-k", metavar="SUBSTRING", default="", help="only cases whose name contains it")
    args = p.parse_args()
    t0 = time.monotonic()
    rows = run_all([c for c in CASES if args.k in c.name], verbose=True)
    print(format_counts(rows))
    print(f"({time.monotonic() - t0:.1f} s)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(dict(rows=rows, torch=torch.__version__), f, indent=1)
    bad = [r for r in rows if r["cls"] not in ("clear error", "correct")]
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
