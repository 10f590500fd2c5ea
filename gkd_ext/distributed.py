"""Losses over a batch split across processes (``torch.distributed``: gloo on CPUs, NCCL on
GPUs), exactly equal to the single-process loss over the whole batch: the contrastive (G-CRD)
InfoNCE and the cosine-kernel GSP loss.

A contrastive loss compares every anchor with every candidate of the batch, so a rank that holds
only its own rows must see the others' candidates. :func:`gather_rows` is an all-gather that
carries gradients back to the rank that owns each row; :func:`contrastive_loss` meets each
rank's anchors with all ranks' candidates through it (local rows against gathered columns), so
memory per rank is O(N·D) for N rows in all, never N x N.

Gradient convention: DistributedDataParallel averages parameter gradients over the P ranks, so
each rank's loss is scaled to make that average the gradient of the global loss (for equal
shards this is each rank's own mean, as usual). The value returned is the global loss on
every rank, for logging.
"""
from __future__ import annotations

from typing import List, Optional, Tuple

import torch
import torch.distributed as dist

from .functional import _check_features
from .functional import contrastive_loss as _contrastive_loss

Tensor = torch.Tensor


def _world(group) -> Tuple[int, int]:
    if not (dist.is_available() and dist.is_initialized()):
        raise RuntimeError("gkd_ext.distributed: torch.distributed is not initialised; call "
                           "torch.distributed.init_process_group first (torchrun does the "
                           "rendezvous), or use the single-process gkd_ext losses")
    return dist.get_rank(group), dist.get_world_size(group)


def _row_counts(n: int, device: torch.device, group) -> List[int]:
    _, world = _world(group)
    mine = torch.tensor([n], dtype=torch.long, device=device)
    counts = [torch.zeros_like(mine) for _ in range(world)]
    dist.all_gather(counts, mine, group=group)
    return [int(c) for c in counts]


class _GatherRows(torch.autograd.Function):
    """All ranks' rows, concatenated in rank order; the backward sums, over the ranks, the
    gradients that reach each row and hands every rank those of its own rows."""

    @staticmethod
    def forward(ctx, x: Tensor, counts: List[int], group) -> Tensor:
        rank, _ = _world(group)
        ctx.counts, ctx.rank, ctx.group = counts, rank, group
        width = max(counts)   # all_gather wants equal shapes: pad to the longest shard
        padded = x.new_zeros((width,) + tuple(x.shape[1:]))
        padded[: x.size(0)] = x
        parts = [torch.empty_like(padded) for _ in counts]
        dist.all_gather(parts, padded.contiguous(), group=group)
        return torch.cat([p[:c] for p, c in zip(parts, counts)])

    @staticmethod
    def backward(ctx, grad: Tensor):
        grad = grad.contiguous().clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM, group=ctx.group)
        start = sum(ctx.counts[: ctx.rank])
        return grad[start: start + ctx.counts[ctx.rank]], None, None


def gather_rows(x: Tensor, group=None, counts: Optional[List[int]] = None
                ) -> Tuple[Tensor, List[int]]:
    """Every rank's ``x [n_r, ...]`` concatenated in rank order ``[sum n_r, ...]``, with the
    row counts ``n_r``. Differentiable: the gradient of a row returns to the rank that owns it,
    summed over the ranks that used it. Ranks may hold different numbers of rows; ``counts``,
    when a previous gather of as many rows gave them, saves the collective that finds them."""
    if counts is None:
        counts = _row_counts(x.size(0), x.device, group)
    return _GatherRows.apply(x, counts, group), counts


def _others_first(local: Tensor, gathered: Tensor, counts: List[int], rank: int) -> Tensor:
    """The candidates with this rank's own rows first (so anchor i's positive is candidate i):
    the local tensor itself, then the other ranks' rows from the gather."""
    start = sum(counts[:rank])
    return torch.cat([local, gathered[:start], gathered[start + counts[rank]:]])


def contrastive_loss(z_s: Tensor, z_t: Tensor, temperature: float = 0.075,
                     symmetric: bool = False, precision: str = "ieee", group=None) -> Tensor:
    r""":func:`gkd_ext.contrastive_loss` (G-CRD's tiled InfoNCE) over the batch all ranks hold
    together: each rank passes its own rows ``z_s [n_r, D]``, ``z_t [n_r, D]``; the positive of
    an anchor is its own row's candidate, every other rank's row a negative:

    .. math:: L = \frac1N \sum_{i} \Big[\log \sum_{j} e^{z_s[i]\cdot z_t[j]/\tau}
              - z_s[i]\cdot z_t[i]/\tau\Big], \quad N = \textstyle\sum_r n_r

    (and with ``symmetric`` the mean of that and the teacher-anchored direction). Gradients
    reach every rank's ``z_s`` and ``z_t`` (the teacher's projection head is trainable, so the
    gathered candidates carry gradients back), scaled so that DistributedDataParallel's
    average over ranks is the gradient of L; the value returned is L itself on every rank.
    Every rank must call it (it communicates). Memory per rank O(N·D).

    Example (under ``torchrun``)::

        loss = gkd_ext.distributed.contrastive_loss(z_s_local, z_t_local, 0.075)
        loss.backward()   # inside DDP: parameter gradients equal the single-process ones
    """
    if z_s.shape != z_t.shape or z_s.dim() != 2:
        raise ValueError(f"gkd_ext.distributed.contrastive_loss: 'z_s' and 'z_t' must be 2-D of "
                         f"one shape [n_r, D], got {list(z_s.shape)} and {list(z_t.shape)}")
    rank, world = _world(group)
    cand_t, counts = gather_rows(z_t, group)
    total = sum(counts)
    if total == 0:
        raise ValueError("gkd_ext.distributed.contrastive_loss: no rank holds any row")
    # Each rank's anchors against all candidates, as a sum over its anchors (a mean times n_r).
    if z_s.size(0):
        local = _contrastive_loss(z_s, _others_first(z_t, cand_t, counts, rank), temperature,
                                  precision=precision) * z_s.size(0)
    if symmetric:
        cand_s, _ = gather_rows(z_s, group, counts)
        if z_s.size(0):
            back = _contrastive_loss(z_t, _others_first(z_s, cand_s, counts, rank),
                                     temperature, precision=precision) * z_s.size(0)
            local = 0.5 * (local + back)
    if z_s.size(0) == 0:
        # No rows here, but the backward's all-reduce must still run on every rank (the
        # others wait for it): keep the gathered candidates in this rank's graph.
        local = cand_t.sum() * 0 + (cand_s.sum() * 0 if symmetric else 0)
    scaled = local * (world / total)
    value = local.detach().clone()
    dist.all_reduce(value, op=dist.ReduceOp.SUM, group=group)
    # The global value, with the gradients of this rank's scaled share.
    return scaled + (value / total - scaled).detach()


class _AllSum(torch.autograd.Function):
    """The sum of ``x`` over the ranks; the backward sums the ranks' gradients likewise (each
    rank's ``x`` reaches every rank's copy of the sum)."""

    @staticmethod
    def forward(ctx, x: Tensor, group) -> Tensor:
        ctx.group = group
        out = x.contiguous().clone()
        dist.all_reduce(out, op=dist.ReduceOp.SUM, group=group)
        return out

    @staticmethod
    def backward(ctx, grad: Tensor):
        grad = grad.contiguous().clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM, group=ctx.group)
        return grad, None


def gsp_loss(h_s: Tensor, h_t: Tensor, kernel: str = "cosine", group=None) -> Tensor:
    r""":func:`gkd_ext.gsp_loss` over the batch all ranks hold together, for the cosine kernel
    (the GSP default): each rank passes its own rows ``h_s [n_r, D_s]``, ``h_t [n_r, D_t]``.

    With unit rows :math:`\hat S, \hat T` the cosine kernels are Gram products, so
    :math:`\sum_{a,b} (K^s_{ab} - K^t_{ab})^2 = \|\hat S^\top \hat S\|^2
    - 2\|\hat S^\top \hat T\|^2 + \|\hat T^\top \hat T\|^2`: the ranks add their
    ``D x D`` Grams (one all-reduce, float64, so the difference keeps its digits) and
    ``L = that / N^2``, ``N = sum n_r``. Gradients reach every rank's rows, scaled so that
    DistributedDataParallel's average over the ranks is the gradient of L; the value is L on
    every rank. Memory per rank O(n_r·D + D²). The other kernels (poly, l2, rbf) have no such
    finite form and raise; every rank must call it (it communicates)."""
    if kernel != "cosine":
        raise ValueError(f"gkd_ext.distributed.gsp_loss: 'kernel' must be 'cosine' (a sum of "
                         f"Gram products across ranks), got {kernel!r}; the other kernels need "
                         "every pair of rows in one process")
    for name, h in (("h_s", h_s), ("h_t", h_t)):   # a rank may hold no rows
        _check_features("distributed.gsp_loss", name, h, "n_r")
    if h_s.size(0) != h_t.size(0):
        raise ValueError(f"gkd_ext.distributed.gsp_loss: 'h_s' and 'h_t' must hold the same rows, "
                         f"got {h_s.size(0)} and {h_t.size(0)}")
    _world(group)   # a process group must be initialised
    s = torch.nn.functional.normalize(h_s, dim=1).double()
    t = torch.nn.functional.normalize(h_t, dim=1).double()
    ds, dt = s.size(1), t.size(1)
    n = torch.tensor([float(s.size(0))], dtype=torch.float64, device=s.device)
    local = torch.cat([(s.T @ s).reshape(-1), (s.T @ t).reshape(-1), (t.T @ t).reshape(-1), n])
    total = _AllSum.apply(local, group)
    g_ss = total[: ds * ds]
    g_st = total[ds * ds: ds * ds + ds * dt]
    g_tt = total[ds * ds + ds * dt: -1]
    count = total[-1].detach()
    if float(count) == 0:
        raise ValueError("gkd_ext.distributed.gsp_loss: no rank holds any row")
    loss = (g_ss.pow(2).sum() - 2 * g_st.pow(2).sum() + g_tt.pow(2).sum()) / count.pow(2)
    # Each rank computes the same L; the all-reduce backward sums the ranks' gradients, so each
    # rank's rows get world x theirs, which DDP's average over the ranks brings back.
    return loss.to(h_s.dtype)


# ------------------------------------------------------------------ data-parallel training
def active(group=None) -> bool:
    """Whether this process is one of several in an initialised process group."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size(group) > 1


def rank() -> int:
    """This process's rank (0 without a process group)."""
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def init_from_env(device: str = "cpu") -> str:
    """Join the process group that ``torchrun`` describes in the environment (RANK,
    WORLD_SIZE, MASTER_ADDR, MASTER_PORT, LOCAL_RANK): NCCL when ``device`` is CUDA, gloo on
    CPUs. Returns the device this rank trains on (``cuda:<LOCAL_RANK>`` for CUDA)."""
    import os
    missing = [k for k in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT") if k not in os.environ]
    if missing:
        raise RuntimeError(f"--distributed: the environment lacks {', '.join(missing)}; start the "
                           "run with torchrun (e.g. torchrun --nproc-per-node 2 -m gkd_ext train "
                           "... --distributed)")
    cuda = torch.device(device).type == "cuda"
    if cuda:
        device = f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}"
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if cuda else "gloo")
    return device


def shard(seeds: Tensor) -> Tensor:
    """This rank's share of a global batch: P equal contiguous parts (the last
    ``len(seeds) % P`` seeds are dropped, so every rank steps on as many seeds and DDP's average
    of per-rank means is the global mean)."""
    world = world_size()
    if world == 1:
        return seeds
    each = seeds.numel() // world
    return seeds[rank() * each:(rank() + 1) * each]


def barrier() -> None:
    dist.barrier()


def broadcast_int(value: int, device: torch.device) -> int:
    """Rank 0's ``value`` on every rank."""
    t = torch.tensor([int(value)], dtype=torch.long, device=device)
    dist.broadcast(t, src=0)
    return int(t)


def all_sum(value: float, device: torch.device) -> float:
    """``value`` summed over the ranks."""
    t = torch.tensor([float(value)], dtype=torch.float64, device=device)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return float(t)


def average_gradients(params) -> None:
    """Average the gradients of ``params`` over the ranks (one all-reduce), for trainable
    modules outside DistributedDataParallel (a loss's projection heads); a missing gradient
    counts as zero, so every rank makes the same collective call."""
    params = [p for p in params if p.requires_grad]
    if not params or not active():
        return
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    flat /= world_size()
    offset = 0
    for p, g in zip(params, grads):
        p.grad = flat[offset:offset + g.numel()].view_as(g).clone()
        offset += g.numel()
