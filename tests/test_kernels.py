"""gkd_ext.kernels (the one table of the ops' vocabularies), the C++ parsers that must accept the
same names (csrc/vocab.h), and gkd::build_info with what reads it."""
import re

import pytest
import torch

import gkd_ext
from gkd_ext import kernels as K
from gkd_ext.functional import has_cuda_kernels, registered_kernels
from gkd_ext.testing import feature_pair, random_graph


# ------------------------------------------------------------------ the table
def test_kernel_table():
    assert K.LSP_KERNELS == ("rbf", "laplacian", "cosine", "poly", "l2", "linear")
    assert set(K.GSP_KERNELS) == {"cosine", "poly", "l2", "rbf"}
    assert K.default_params("rbf") == {"gamma": 0.5}
    assert K.default_params("laplacian") == {"sigma": 100.0}
    assert K.default_params("cosine") == {}
    assert gkd_ext.functional.LSP_KERNELS is K.LSP_KERNELS  # re-exported, not copied
    assert gkd_ext.functional.LSP_REDUCTIONS is K.LSP_REDUCTIONS
    with pytest.raises(ValueError, match="'loss' must be one of \\('lsp', 'gsp'\\)"):
        K.kernels_for("crd")


def test_resolve_kernel():
    assert K.resolve_kernel("f", "lsp", "laplacian", {}) == 100.0
    assert K.resolve_kernel("f", "gsp", "rbf", {"gamma": 2}) == 2.0
    assert K.resolve_kernel("f", "lsp", "linear", {}) == 0.0
    with pytest.raises(ValueError, match="^f: 'kernel' must be one of \\('rbf', 'cosine'"):
        K.resolve_kernel("f", "gsp", "laplacian", {})
    with pytest.raises(ValueError, match="unknown kernel parameter\\(s\\) \\['gamma'\\] for kernel "
                                         "'cosine' \\(it takes no parameters\\)"):
        K.resolve_kernel("f", "lsp", "cosine", {"gamma": 1.0})
    with pytest.raises(ValueError, match="\\['sigma'\\] for kernel 'rbf' \\(it takes 'gamma'\\)"):
        K.resolve_kernel("f", "lsp", "rbf", {"sigma": 1.0})
    for bad in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="'sigma' of the laplacian kernel must be a finite"):
            K.resolve_kernel("f", "lsp", "laplacian", {"sigma": bad})
    with pytest.raises(ValueError, match="'gamma' must be a number, got 'x'"):
        K.resolve_kernel("f", "gsp", "rbf", {"gamma": "x"})


def test_defaults_reach_the_ops():
    # lsp_loss / gsp_loss without parameters equal the calls with the table's defaults.
    g = random_graph(12, 40, isolated=2, self_loops=True)
    hs, ht = feature_pair(12, 4, 6, scale=10.0)
    for kernel in ("rbf", "laplacian"):
        torch.testing.assert_close(gkd_ext.lsp_loss(g, hs, ht, kernel),
                                   gkd_ext.lsp_loss(g, hs, ht, kernel, **K.default_params(kernel)))
        with gkd_ext.use_impl("reference"):
            torch.testing.assert_close(gkd_ext.lsp_loss(g, hs, ht, kernel),
                                       gkd_ext.lsp_loss(g, hs, ht, kernel, **K.default_params(kernel)))
    torch.testing.assert_close(gkd_ext.gsp_loss(hs, ht, "rbf"),
                               gkd_ext.gsp_loss(hs, ht, "rbf", **K.default_params("rbf")))


# ------------------------------------------------------------------ C++ agrees
def _cpp_choices(call) -> tuple:
    """The names a C++ op lists in its "argument '...' must be one of" message."""
    with pytest.raises(RuntimeError, match="must be one of") as info:
        call()
    listed = re.search(r"must be one of (.*), got '", str(info.value)).group(1)
    return tuple(re.findall(r"'([^']*)'", listed))


def test_cpp_parsers_accept_exactly_the_python_names():
    g = random_graph(5, 10)
    x = torch.randn(5, 4)
    ops = torch.ops.gkd
    assert _cpp_choices(lambda: ops.spmm(g.rowptr, g.col, None, x, "min")) == K.SPMM_REDUCES
    assert _cpp_choices(lambda: ops.lsp(g.rowptr, g.col, x, x, "gauss", 1.0)) == K.LSP_KERNELS
    assert _cpp_choices(lambda: ops.gsp(x, x, "laplacian", 1.0)) == K.GSP_KERNELS
    assert _cpp_choices(lambda: ops.infonce(x, x, 1.0, False, "fp8")) == K.PRECISIONS


def test_cpp_checks_the_parameter_of_the_kernels_that_take_one():
    g = random_graph(5, 10)
    x = torch.randn(5, 4)
    for name in K.LSP_KERNELS:
        k = K.KERNELS[name]
        if k.param is None:
            torch.ops.gkd.lsp(g.rowptr, g.col, x, x, name, 0.0)  # ignored
        else:
            with pytest.raises(RuntimeError, match=f"'param' \\({k.param} of the {name} kernel\\)"):
                torch.ops.gkd.lsp(g.rowptr, g.col, x, x, name, 0.0)
    for name in K.GSP_KERNELS:
        k = K.KERNELS[name]
        if k.param is None:
            torch.ops.gkd.gsp(x, x, name, 0.0)
        else:
            with pytest.raises(RuntimeError, match=f"argument '{k.param}' must be a finite number"):
                torch.ops.gkd.gsp(x, x, name, 0.0)


# ------------------------------------------------------------------ build_info
def test_build_info():
    with_cuda, ops, keys = torch.ops.gkd.build_info()
    assert list(ops) == sorted(ops)
    kernels = registered_kernels()
    expected = {"check_csr", "spmm", "spmm_backward", "sddmm", "lsp", "lsp_backward", "infonce",
                "infonce_backward", "gsp", "gsp_backward", "sample_neighbors", "build_info"}
    assert set(kernels) == expected
    for op in expected - {"build_info"}:
        assert {"CPU", "Meta"} <= set(kernels[op]), op
        assert ("CUDA" in kernels[op]) == with_cuda, op
    # The backward ops' autograd formula only raises (double backward is not implemented).
    assert "Autograd" in kernels["spmm"] and "Autograd" in kernels["spmm_backward"]
    assert has_cuda_kernels() == with_cuda and has_cuda_kernels("lsp") == with_cuda
    assert not has_cuda_kernels("no_such_op")
    # No tensor in or out: nothing for AOT autograd to trace, so that one check does not apply.
    torch.library.opcheck(torch.ops.gkd.build_info, (),
                          test_utils=("test_schema", "test_autograd_registration", "test_faketensor"))


def test_info_report():
    from gkd_ext.info import report
    text = report()
    assert f"CUDA kernels built: {'yes' if has_cuda_kernels() else 'no'}" in text
    assert re.search(r"gkd::spmm +CPU.* fake autograd", text)
    assert re.search(r"gkd::lsp_backward +CPU.* fake", text)
