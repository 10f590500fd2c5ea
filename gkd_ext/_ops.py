"""Fake (meta) kernels and autograd formulas for every gkd:: op.

Fake kernels give output shapes from input shapes alone (they never read values, so a malformed
graph is caught by the real kernels' checks at run time, compiled or not), so the ops trace
under ``torch.compile`` and export. Backward passes call the schema'd backward ops, so they
trace too. The backward ops are not differentiable themselves: a second-order gradient through
any gkd op raises a RuntimeError saying so (rather than silently giving zeros or None).
"""
import torch

_lib = torch.ops.gkd


def _no_double_backward(op: str):
    """An autograd formula for a backward op that raises when a gradient flows through it."""
    def backward(ctx, *grads):
        raise RuntimeError(
            f"gkd::{op}: gradients of gradients (double backward, e.g. torch.autograd.grad with "
            "create_graph=True followed by a second backward) are not implemented for gkd_ext's "
            "ops; compute the second-order term with the gkd_ext.reference implementations")

    def setup_context(ctx, inputs, output):
        pass

    torch.library.register_autograd(f"gkd::{op}", backward, setup_context=setup_context)


# ------------------------------------------------------------------ check_csr
@torch.library.register_fake("gkd::check_csr")
def _check_csr_fake(rowptr, col, num_src, t_rowptr=None, t_col=None, t_perm=None):
    return None


def stat_dtype(x: torch.Tensor) -> torch.dtype:
    """The dtype the ops accumulate in and keep their statistics in (row log-sum-exps, squared
    norms): float32 for float16/bfloat16 inputs, the input dtype otherwise (C++: stat_dtype)."""
    return torch.float32 if x.dtype in (torch.float16, torch.bfloat16) else x.dtype


# ------------------------------------------------------------------ spmm
@torch.library.register_fake("gkd::spmm")
def _spmm_fake(rowptr, col, value, x, reduce, t_rowptr=None, t_col=None, t_perm=None):
    rows = rowptr.shape[0] - 1
    out = x.new_empty((rows, x.shape[1]))
    arg_shape = (rows, x.shape[1]) if reduce == "max" else (0,)
    return out, x.new_empty(arg_shape, dtype=torch.long)


@torch.library.register_fake("gkd::spmm_backward")
def _spmm_backward_fake(rowptr, col, value, x, grad_out, arg, reduce, t_rowptr, t_col, t_perm,
                        need_x, need_value):
    grad_x = x.new_empty(x.shape) if need_x else x.new_empty((0,))
    grad_v = x.new_empty(value.shape) if need_value else x.new_empty((0,))
    return grad_x, grad_v


def _spmm_setup_context(ctx, inputs, output):
    rowptr, col, value, x, reduce, t_rowptr, t_col, t_perm = inputs
    ctx.reduce = reduce
    ctx.save_for_backward(rowptr, col, value, x, output[1], t_rowptr, t_col, t_perm)


def _spmm_backward(ctx, grad_out, _grad_arg):
    rowptr, col, value, x, arg, t_rowptr, t_col, t_perm = ctx.saved_tensors
    need_value, need_x = ctx.needs_input_grad[2], ctx.needs_input_grad[3]
    grad_x, grad_v = _lib.spmm_backward(rowptr, col, value, x, grad_out, arg, ctx.reduce,
                                        t_rowptr, t_col, t_perm, need_x, need_value)
    return (None, None, grad_v if need_value else None, grad_x if need_x else None,
            None, None, None, None)


torch.library.register_autograd("gkd::spmm", _spmm_backward, setup_context=_spmm_setup_context)
_no_double_backward("spmm_backward")


# ------------------------------------------------------------------ sddmm
@torch.library.register_fake("gkd::sddmm")
def _sddmm_fake(rowptr, col, a, b, heads=1, t_rowptr=None, t_col=None, t_perm=None):
    return a.new_empty((col.shape[0], heads))


def _sddmm_setup_context(ctx, inputs, output):
    rowptr, col, a, b, heads, t_rowptr, t_col, t_perm = inputs
    ctx.save_for_backward(rowptr, col, a, b, t_rowptr, t_col, t_perm)


def _sddmm_backward(ctx, grad):
    # out[e, h] = <a[i,h], b[j,h]>: grad_a = A_grad @ b (CSR by destination) and
    # grad_b = A_grad^T @ a (the transposed CSR), both as multi-head SpMMs with the edge
    # gradient as values.
    # With create_graph these SpMMs are differentiated in turn (double backward): the first
    # walks the graph, so its gradient for b needs the graph's transpose; the second walks the
    # transpose, whose own transpose is the graph with the inverse of t_perm.
    rowptr, col, a, b, t_rowptr, t_col, t_perm = ctx.saved_tensors
    grad = grad.contiguous()
    grad_a = grad_b = None
    if ctx.needs_input_grad[2]:
        grad_a = _lib.spmm(rowptr, col, grad, b, "sum", t_rowptr, t_col, t_perm)[0]
    if ctx.needs_input_grad[3]:
        if t_rowptr is None:
            raise RuntimeError("gkd::sddmm: the gradient for 'b' needs the transposed graph "
                               "(t_rowptr, t_col, t_perm); call gkd_ext.sddmm with a Graph")
        back = (None, None, None)
        if torch.is_grad_enabled() and a.requires_grad:
            inverse = torch.empty_like(t_perm)
            inverse[t_perm] = torch.arange(t_perm.numel(), device=t_perm.device)
            back = (rowptr, col, inverse)
        grad_b = _lib.spmm(t_rowptr, t_col, grad[t_perm], a, "sum", *back)[0]
    return None, None, grad_a, grad_b, None, None, None, None


torch.library.register_autograd("gkd::sddmm", _sddmm_backward, setup_context=_sddmm_setup_context)


# ------------------------------------------------------------------ infonce (G-CRD)
# z_s [n, D] anchors, z_t [m, D] candidates (m >= n; m == n when symmetric).
@torch.library.register_fake("gkd::infonce")
def _infonce_fake(z_s, z_t, temperature, symmetric=False, precision="ieee"):
    n = z_s.shape[0]
    # The C++ check, for traces that never run the kernel.
    torch._check(z_t.shape[0] >= n, lambda: f"gkd::infonce: argument 'z_t' must have at least "
                 f"n = {n} rows, got shape {list(z_t.shape)}")
    stat = stat_dtype(z_s)
    lse_t = z_s.new_empty((n,) if symmetric else (0,), dtype=stat)
    return z_s.new_empty(()), z_s.new_empty((n,), dtype=stat), lse_t


@torch.library.register_fake("gkd::infonce_backward")
def _infonce_backward_fake(grad, z_s, z_t, lse_s, lse_t, temperature, symmetric, precision,
                           need_s, need_t):
    # Each gradient has its input's shape: [n, D] for z_s, [m, D] for z_t.
    gs = z_s.new_empty(z_s.shape) if need_s else z_s.new_empty((0,))
    gt = z_t.new_empty(z_t.shape) if need_t else z_s.new_empty((0,))
    return gs, gt


def _infonce_setup_context(ctx, inputs, output):
    z_s, z_t, temperature, symmetric, precision = inputs
    ctx.args = (temperature, symmetric, precision)
    ctx.save_for_backward(z_s, z_t, output[1], output[2])
    ctx.mark_non_differentiable(output[1], output[2])


def _infonce_backward(ctx, grad, _g_lse_s, _g_lse_t):
    z_s, z_t, lse_s, lse_t = ctx.saved_tensors
    need_s, need_t = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
    gs, gt = _lib.infonce_backward(grad, z_s, z_t, lse_s, lse_t, *ctx.args, need_s, need_t)
    return (gs if need_s else None, gt if need_t else None, None, None, None)


torch.library.register_autograd("gkd::infonce", _infonce_backward,
                                setup_context=_infonce_setup_context)
_no_double_backward("infonce_backward")


# ------------------------------------------------------------------ gsp
@torch.library.register_fake("gkd::gsp")
def _gsp_fake(h_s, h_t, kernel, gamma):
    n = h_s.shape[0]
    stat = stat_dtype(h_s)
    return h_s.new_empty(()), h_s.new_empty((n,), dtype=stat), h_s.new_empty((n,), dtype=stat)


@torch.library.register_fake("gkd::gsp_backward")
def _gsp_backward_fake(grad, h_s, h_t, sq_s, sq_t, kernel, gamma, need_s, need_t):
    gs = h_s.new_empty(h_s.shape) if need_s else h_s.new_empty((0,))
    gt = h_t.new_empty(h_t.shape) if need_t else h_s.new_empty((0,))
    return gs, gt


def _gsp_setup_context(ctx, inputs, output):
    h_s, h_t, kernel, gamma = inputs
    ctx.args = (kernel, gamma)
    ctx.save_for_backward(h_s, h_t, output[1], output[2])
    ctx.mark_non_differentiable(output[1], output[2])


def _gsp_backward(ctx, grad, _g_sq_s, _g_sq_t):
    h_s, h_t, sq_s, sq_t = ctx.saved_tensors
    need_s, need_t = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
    gs, gt = _lib.gsp_backward(grad, h_s, h_t, sq_s, sq_t, *ctx.args, need_s, need_t)
    return gs if need_s else None, gt if need_t else None, None, None


torch.library.register_autograd("gkd::gsp", _gsp_backward, setup_context=_gsp_setup_context)
_no_double_backward("gsp_backward")


# ------------------------------------------------------------------ lsp
@torch.library.register_fake("gkd::lsp")
def _lsp_fake(rowptr, col, h_s, h_t, kernel, param, t_rowptr=None, t_col=None, t_perm=None):
    n, dt = rowptr.shape[0] - 1, stat_dtype(h_s)
    return (h_s.new_empty((n,)), h_s.new_empty((n, 3), dtype=dt),
            h_s.new_empty((col.shape[0], 2), dtype=dt))


@torch.library.register_fake("gkd::lsp_backward")
def _lsp_backward_fake(rowptr, col, h_s, h_t, stats, edge_logits, grad_kl, kernel, param, t_rowptr,
                       t_col, t_perm, need_s, need_t):
    grad_s = h_s.new_empty(h_s.shape) if need_s else h_s.new_empty((0,))
    grad_t = h_t.new_empty(h_t.shape) if need_t else h_t.new_empty((0,))
    return grad_s, grad_t


def _lsp_setup_context(ctx, inputs, output):
    rowptr, col, h_s, h_t, kernel, param, t_rowptr, t_col, t_perm = inputs
    ctx.kernel, ctx.param = kernel, param
    ctx.save_for_backward(rowptr, col, h_s, h_t, output[1], output[2], t_rowptr, t_col, t_perm)
    ctx.mark_non_differentiable(output[1], output[2])


def _lsp_backward(ctx, grad_kl, _grad_stats, _grad_logits):
    rowptr, col, h_s, h_t, stats, edge_logits, t_rowptr, t_col, t_perm = ctx.saved_tensors
    need_s, need_t = ctx.needs_input_grad[2], ctx.needs_input_grad[3]
    if t_rowptr is None:
        raise RuntimeError("gkd::lsp: the gradients need the transposed graph (t_rowptr, t_col, "
                           "t_perm); call gkd_ext.lsp_loss with a Graph")
    grad_s, grad_t = _lib.lsp_backward(rowptr, col, h_s, h_t, stats, edge_logits, grad_kl, ctx.kernel,
                                       ctx.param, t_rowptr, t_col, t_perm, need_s, need_t)
    return (None, None, grad_s if need_s else None, grad_t if need_t else None,
            None, None, None, None, None)


torch.library.register_autograd("gkd::lsp", _lsp_backward, setup_context=_lsp_setup_context)
_no_double_backward("lsp_backward")


# ------------------------------------------------------------------ sample_neighbors
@torch.library.register_fake("gkd::sample_neighbors")
def _sample_neighbors_fake(rowptr, col, nodes, fanout, replace, seed):
    # The sample's size depends on the degrees and on the repeats among sources: unbacked sizes.
    ctx = torch.library.get_ctx()
    edges, sources = ctx.new_dynamic_size(), ctx.new_dynamic_size()
    return (rowptr.new_empty((nodes.shape[0] + 1,)), col.new_empty((edges,)),
            nodes.new_empty((sources,)), col.new_empty((edges,)))
