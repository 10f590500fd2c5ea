"""Distillation losses as nn.Modules (METHODS.md §1–3, §7).

Every loss here has one signature, so a training loop (a PyG model's included) can swap them:

    loss(student, teacher, graph=None, nodes=None) -> scalar

``student`` and ``teacher`` are row-aligned tensors (logits or node representations; their
widths may differ where the loss allows it), ``graph`` the :class:`~gkd_ext.Graph` (or a PyG
``edge_index [2, E]``) that structure losses read and the others ignore, and ``nodes`` a bool
mask or index tensor restricting the loss to some rows. No loss detaches anything: gradients
reach both inputs, and the caller decides what is frozen (``teacher.detach()`` for offline KD,
nothing for online mutual distillation). The modules are thin wrappers over the documented
functions in :mod:`gkd_ext.functional`.
"""
from __future__ import annotations

import math
import warnings
from typing import Optional, Union

import torch
from torch import nn
import torch.nn.functional as F

from .functional import contrastive_loss, gsp_loss, lsp_loss
from .graph import Graph
from .kernels import LSP_REDUCTIONS, check_choice, resolve_kernel

Tensor = torch.Tensor
GraphLike = Union[Graph, Tensor]


def _rows(t: Tensor, nodes: Optional[Tensor]) -> Tensor:
    """The rows of ``t`` selected by ``nodes`` (bool mask or index tensor; None: all)."""
    return t if nodes is None else t[nodes]


def as_graph(graph: Optional[GraphLike], num_nodes: int, where: str) -> Graph:
    """A :class:`Graph` from a Graph or a PyG-style ``edge_index [2, E]`` over ``num_nodes``
    nodes (converting sorts the edges: build a Graph once when calling in a loop)."""
    if isinstance(graph, Graph):
        return graph
    if isinstance(graph, Tensor) and graph.dim() == 2 and graph.size(0) == 2:
        return Graph.from_edge_index(graph, num_nodes)
    raise TypeError(f"{where}: 'graph' must be a gkd_ext.Graph or an edge_index [2, E] tensor, "
                    f"got {type(graph).__name__ if not isinstance(graph, Tensor) else list(graph.shape)}")


class DistillLoss(nn.Module):
    """Base class: ``forward(student, teacher, graph=None, nodes=None) -> scalar``.
    ``uses_graph`` says whether the loss reads ``graph`` (the rows' edges)."""
    uses_graph: bool = False

    def forward(self, student: Tensor, teacher: Tensor, graph: Optional[GraphLike] = None,
                nodes: Optional[Tensor] = None) -> Tensor:
        raise NotImplementedError


# ------------------------------------------------------------------ logit KD, FitNet, AT (§7)
class LogitKDLoss(DistillLoss):
    """Hinton's logit distillation: ``T² · KL(softmax(z_t/T) ‖ softmax(z_s/T))`` over the rows
    (``nodes``, default all), divided by their number (``batchmean``). The seed code divided by
    N·C by accident, available as ``per_class_mean=True``. For multi-label tasks the KL becomes
    BCE against ``sigmoid(z_t / T)``. Methods mix it with the task loss as
    ``alpha · KD + (1 − alpha) · CE``.

    Example:
        >>> kd = LogitKDLoss(temperature=4.0)
        >>> loss = 0.9 * kd(z_student, z_teacher.detach()) + 0.1 * F.cross_entropy(z_student[train], y[train])
    """

    def __init__(self, temperature: float = 4.0, multilabel: bool = False,
                 per_class_mean: bool = False):
        super().__init__()
        if not temperature > 0:
            raise ValueError(f"LogitKDLoss: 'temperature' must be > 0, got {temperature}")
        self.T, self.multilabel, self.per_class_mean = temperature, multilabel, per_class_mean

    def forward(self, z_s: Tensor, z_t: Tensor, graph: Optional[GraphLike] = None,
                nodes: Optional[Tensor] = None) -> Tensor:
        z_s, z_t, T = _rows(z_s, nodes), _rows(z_t, nodes), self.T
        if self.multilabel:
            return F.binary_cross_entropy_with_logits(z_s / T, torch.sigmoid(z_t / T)) * T * T
        kl = F.kl_div(F.log_softmax(z_s / T, -1), F.log_softmax(z_t / T, -1), log_target=True,
                      reduction="sum") / z_s.size(0)
        if self.per_class_mean:
            kl = kl / z_s.size(1)
        return kl * T * T


class FitNetLoss(DistillLoss):
    """FitNet hint loss: ``MSE(normalize(W h_s), normalize(h_t))`` with a trainable linear map
    ``W`` from the student width to the teacher width (rows L2-normalised)."""

    def __init__(self, student_dim: int, teacher_dim: int):
        super().__init__()
        self.proj = nn.Linear(student_dim, teacher_dim)

    def forward(self, h_s: Tensor, h_t: Tensor, graph: Optional[GraphLike] = None,
                nodes: Optional[Tensor] = None) -> Tensor:
        h_s, h_t = _rows(h_s, nodes), _rows(h_t, nodes)
        return F.mse_loss(F.normalize(self.proj(h_s), dim=-1), F.normalize(h_t, dim=-1))


class ATLoss(DistillLoss):
    """Attention transfer over nodes: ``a_i = Σ_d h_id²``, ``â = a / ‖a‖₂`` over the nodes,
    loss ``MSE(â_s, â_t)``. Works across different widths."""

    @staticmethod
    def attention(h: Tensor) -> Tensor:
        return F.normalize(h.pow(2).sum(-1), dim=0)

    def forward(self, h_s: Tensor, h_t: Tensor, graph: Optional[GraphLike] = None,
                nodes: Optional[Tensor] = None) -> Tensor:
        return F.mse_loss(self.attention(_rows(h_s, nodes)), self.attention(_rows(h_t, nodes)))


# ---------------------------------------------------------------- GSP and G-CRD (Joshi et al.)
def _node_subset(n: int, nodes: Optional[Tensor], max_samples: Optional[int],
                 generator: Optional[torch.Generator], device: torch.device) -> Optional[Tensor]:
    """Indices of the nodes a similarity loss runs over: ``nodes`` (bool mask [n] or index
    tensor), then at most ``max_samples`` of them drawn uniformly without replacement per call
    (the papers' subsampling); None means all n nodes."""
    idx = None
    if nodes is not None:
        if not isinstance(nodes, Tensor):
            raise TypeError(f"'nodes' must be a bool mask or an index tensor, got {type(nodes).__name__}")
        if nodes.dtype == torch.bool:
            if nodes.shape != (n,):
                raise ValueError(f"a bool 'nodes' mask must have shape [{n}], got {list(nodes.shape)}")
            idx = nodes.nonzero().view(-1)
        elif nodes.dtype in (torch.int64, torch.int32):
            idx = nodes.view(-1).long()
        else:
            raise ValueError(f"'nodes' must be a bool mask or an int64/int32 index tensor, got {nodes.dtype}")
        idx = idx.to(device)
    if max_samples is not None:
        count = n if idx is None else idx.numel()
        if count > max_samples:
            pick = torch.randperm(count, generator=generator,
                                  device=generator.device if generator is not None else "cpu")
            pick = pick[:max_samples].to(device)
            idx = pick if idx is None else idx[pick]
    return idx


def _check_max_samples(max_samples: Optional[int]) -> Optional[int]:
    if max_samples is not None and (int(max_samples) != max_samples or max_samples < 1):
        raise ValueError(f"'max_samples' must be a positive integer or None, got {max_samples!r}")
    return None if max_samples is None else int(max_samples)


class _ProjectionHead(nn.Sequential):
    """``Linear(d, p) -> BatchNorm1d(p) -> ReLU`` (the G-CRD projection head)."""

    def __init__(self, d: int, p: int):
        super().__init__(nn.Linear(d, p), nn.BatchNorm1d(p), nn.ReLU())


def _restrict_pair(where: str, h_s: Tensor, h_t: Tensor, nodes: Optional[Tensor],
                   max_samples: Optional[int], generator: Optional[torch.Generator]):
    """Student and teacher rows of the node subset a similarity loss runs over."""
    if h_s.size(0) != h_t.size(0):
        raise ValueError(f"{where}: 'h_s' and 'h_t' must have the same number of rows n, got "
                         f"{list(h_s.shape)} and {list(h_t.shape)}")
    idx = _node_subset(h_s.size(0), nodes, max_samples, generator, h_s.device)
    return (h_s, h_t) if idx is None else (h_s[idx], h_t[idx])


class GCRDLoss(DistillLoss):
    r"""Graph contrastive representation distillation (G-CRD, Joshi et al.).

    Trainable projection heads map student features ``h_s [n, d_s]`` and teacher features
    ``h_t [n, d_t]`` to ``p`` dimensions (``Linear -> BatchNorm1d -> ReLU``), rows are
    L2-normalised, and the tiled InfoNCE of :func:`gkd_ext.contrastive_loss` (student anchors,
    teacher candidates, positive = the same node) is returned:

    .. math:: L = \frac1{|S|} \sum_{i \in S} \Big[\log \sum_{j \in S} e^{z_s[i]\cdot z_t[j]/\tau}
              - z_s[i]\cdot z_t[i]/\tau\Big]

    Memory O(|S|·p), so all nodes can be used (the default); ``max_samples`` reproduces the
    paper's random subsampling (a fresh subset per call).

    Args:
        d_s, d_t: student and teacher feature widths.
        p: projection width (256).
        temperature: :math:`\tau` (0.075; 0.05 with logit KD).
        symmetric: also anchor on the teacher and average both directions.
        max_samples: at most this many nodes per call, drawn uniformly; None: all.
        precision: ``"ieee"`` (default), ``"tf32"`` or ``"bf16"`` (CUDA tensor cores).
        generator: optional torch.Generator for the subsampling.

    Shape: ``forward(h_s [n, d_s], h_t [n, d_t], graph=None, nodes=None) -> []``; ``nodes`` is
    a bool mask ``[n]`` or an index tensor selecting S (e.g. the training nodes); ``graph`` is
    not read. In a process group of several ranks (data-parallel training) each rank's rows
    are one share of S: the InfoNCE is :func:`gkd_ext.distributed.contrastive_loss`, every
    rank's candidates negatives of every anchor (the heads' batch-norm statistics stay per rank).

    Example:
        >>> crd = GCRDLoss(64, 256)
        >>> loss = crd(torch.randn(100, 64), torch.randn(100, 256))
    """

    def __init__(self, d_s: int, d_t: int, p: int = 256, temperature: float = 0.075,
                 symmetric: bool = False, max_samples: Optional[int] = None,
                 precision: str = "ieee", generator: Optional[torch.Generator] = None):
        super().__init__()
        if not temperature > 0:
            raise ValueError(f"GCRDLoss: 'temperature' must be > 0, got {temperature}")
        self.proj_s = _ProjectionHead(d_s, p)
        self.proj_t = _ProjectionHead(d_t, p)
        self.temperature = float(temperature)
        self.symmetric = bool(symmetric)
        self.max_samples = _check_max_samples(max_samples)
        self.precision = precision
        self.generator = generator

    def forward(self, h_s: Tensor, h_t: Tensor, graph: Optional[GraphLike] = None,
                nodes: Optional[Tensor] = None) -> Tensor:
        h_s, h_t = _restrict_pair("GCRDLoss", h_s, h_t, nodes, self.max_samples, self.generator)
        z_s = nn.functional.normalize(self.proj_s(h_s), dim=1)
        z_t = nn.functional.normalize(self.proj_t(h_t), dim=1)
        from . import distributed
        if distributed.active():   # data-parallel: every rank's candidates are negatives
            return distributed.contrastive_loss(z_s, z_t, self.temperature, self.symmetric,
                                                self.precision)
        return contrastive_loss(z_s, z_t, self.temperature, self.symmetric, self.precision)

    def extra_repr(self) -> str:
        return (f"temperature={self.temperature}, symmetric={self.symmetric}, "
                f"max_samples={self.max_samples}, precision={self.precision!r}")


class GSPLoss(DistillLoss):
    r"""Global structure preserving loss (GSP, Joshi et al.): :func:`gkd_ext.gsp_loss` over a
    node set S, ``mean_{a,b in S} (K_s[a,b] - K_t[a,b])^2``.

    Args:
        kernel: ``"cosine" | "poly" | "l2" | "rbf"``.
        max_samples: at most this many nodes per call, drawn uniformly (the paper's 2048–24576
            subsampling); None: all nodes, which the tiled kernel affords (memory O(n·D)).
        generator: optional torch.Generator for the subsampling.
        **kernel_params: ``gamma`` for ``"rbf"`` (0.5).

    Shape: ``forward(h_s [n, D_s], h_t [n, D_t], graph=None, nodes=None) -> []`` (``graph`` is
    not read). In a process group of several ranks (data-parallel training) each rank's rows
    are one share of S: with the cosine kernel the loss is
    :func:`gkd_ext.distributed.gsp_loss`, over every pair of S across the ranks; the other
    kernels compare the rank's own rows only (a warning says so once).

    Example:
        >>> gsp = GSPLoss("rbf", gamma=0.5)
        >>> loss = gsp(torch.randn(100, 64), torch.randn(100, 256))
    """

    def __init__(self, kernel: str = "cosine", max_samples: Optional[int] = None,
                 generator: Optional[torch.Generator] = None, **kernel_params):
        super().__init__()
        self.kernel = kernel
        self.kernel_params = dict(kernel_params)
        self.max_samples = _check_max_samples(max_samples)
        self.generator = generator

    def forward(self, h_s: Tensor, h_t: Tensor, graph: Optional[GraphLike] = None,
                nodes: Optional[Tensor] = None) -> Tensor:
        h_s, h_t = _restrict_pair("GSPLoss", h_s, h_t, nodes, self.max_samples, self.generator)
        from . import distributed
        if distributed.active():
            if self.kernel == "cosine":   # data-parallel: the pairs across ranks too
                return distributed.gsp_loss(h_s, h_t, self.kernel)
            warnings.warn(f"GSPLoss: the {self.kernel!r} kernel compares each rank's own rows "
                          "only under data-parallel training (the cosine kernel covers every "
                          "pair across the ranks)", stacklevel=2)
        return gsp_loss(h_s, h_t, self.kernel, **self.kernel_params)

    def extra_repr(self) -> str:
        return f"kernel={self.kernel!r}, max_samples={self.max_samples}, params={self.kernel_params}"


# ------------------------------------------------------------------ LSP
class LSPLoss(DistillLoss):
    r"""Local structure preserving loss (Yang et al., CVPR 2020) as a module.

    ``LSPLoss(kernel, reduction, **kernel_params)(h_student, h_teacher, graph)`` is
    :func:`gkd_ext.lsp_loss`: per destination node, KL(teacher || student) between the
    softmaxes of the kernel values ``k(h_i, h_j)`` over its incoming edges, fused, O(N) memory,
    deterministic backward. Kernel and parameters are validated at construction.

    Args:
        kernel: ``rbf`` (``gamma=0.5``), ``laplacian`` (``sigma=100``), ``cosine``, ``poly``,
            ``l2`` or ``linear``.
        reduction: ``node_mean`` (default), ``edge_mean``, ``sum`` or ``none``.
        **kernel_params: ``gamma`` or ``sigma``.

    Shapes: ``h_student [N, D_s]``, ``h_teacher [N, D_t]`` on a square graph of N nodes (a
    :class:`Graph` or an ``edge_index [2, E]``). With ``nodes``, only those nodes' KL terms
    count: ``node_mean`` averages over them, ``edge_mean`` divides by their incoming edges.

    Example:
        >>> loss_fn = LSPLoss("laplacian", sigma=100.0)
        >>> loss = loss_fn(h_student, h_teacher.detach(), graph)
    """

    uses_graph = True

    def __init__(self, kernel: str = "rbf", reduction: str = "node_mean", **kernel_params):
        super().__init__()
        resolve_kernel("LSPLoss", "lsp", kernel, kernel_params)
        check_choice("LSPLoss", "reduction", reduction, LSP_REDUCTIONS)
        self.kernel, self.reduction, self.kernel_params = kernel, reduction, dict(kernel_params)

    def forward(self, h_student: Tensor, h_teacher: Tensor, graph: Optional[GraphLike] = None,
                nodes: Optional[Tensor] = None) -> Tensor:
        if graph is None:
            raise TypeError("LSPLoss: 'graph' is required (the loss compares neighbourhoods)")
        graph = as_graph(graph, h_student.size(0), "LSPLoss")
        if nodes is None:
            return lsp_loss(graph, h_student, h_teacher, kernel=self.kernel,
                            reduction=self.reduction, **self.kernel_params)
        kl = lsp_loss(graph, h_student, h_teacher, kernel=self.kernel, reduction="none",
                      **self.kernel_params)[nodes]
        if self.reduction == "none":
            return kl
        if self.reduction == "node_mean":
            return kl.sum() / max(kl.numel(), 1)
        if self.reduction == "edge_mean":
            return kl.sum() / max(int(graph.degree("in")[nodes].sum()), 1)
        return kl.sum()

    def extra_repr(self) -> str:
        params = "".join(f", {k}={v}" for k, v in self.kernel_params.items())
        return f"kernel={self.kernel!r}, reduction={self.reduction!r}{params}"


# ------------------------------------------------------------------ graph mutual learning (§5)
def confidence_features(logits: Tensor) -> Tensor:
    """Per row of ``logits [n, C]``: ``(entropy / log C, max probability, margin)`` of its
    softmax, each in [0, 1] (the margin is the top probability minus the second)."""
    logp = F.log_softmax(logits, -1)
    p = logp.exp()
    C = logits.size(-1)
    entropy = -(p * logp).sum(-1) / max(math.log(C), 1e-12)
    top = p.topk(min(2, C), dim=-1).values
    margin = top[..., 0] - top[..., 1] if C > 1 else torch.zeros_like(top[..., 0])
    return torch.stack([entropy, top[..., 0], margin], -1)


class AdaptiveLogitWeighting(nn.Module):
    r"""The adaptive logit weighting (ALW) unit of graph mutual learning (METHODS.md §5).

    From each peer's confidence features :math:`\phi(z_j[v])` (:func:`confidence_features`
    of its detached logits) it gives a weight logit :math:`s_{j,v} = w\cdot\phi(z_j[v]) + b`
    per peer and node, and a node-wise temperature
    :math:`T_v = T_{min} + (T_{max} - T_{min})\,\sigma(u\cdot\bar\phi(v) + c)` from the peers'
    mean features. Initialised at zero: uniform weights and the middle temperature.

    ``forward(logits: list of K [n, C]) -> (scores [K, n], T [n])``.
    """

    def __init__(self, t_min: float = 1.0, t_max: float = 4.0):
        super().__init__()
        if not 0 < t_min <= t_max:
            raise ValueError(f"AdaptiveLogitWeighting: need 0 < t_min <= t_max, got {t_min}, {t_max}")
        self.t_min, self.t_max = float(t_min), float(t_max)
        self.score = nn.Linear(3, 1)
        self.temperature = nn.Linear(3, 1)
        for lin in (self.score, self.temperature):
            nn.init.zeros_(lin.weight)
            nn.init.zeros_(lin.bias)

    def forward(self, logits):
        phi = torch.stack([confidence_features(z.detach()) for z in logits])    # [K, n, 3]
        scores = self.score(phi).squeeze(-1)
        gate = torch.sigmoid(self.temperature(phi.mean(0)).squeeze(-1))
        return scores, self.t_min + (self.t_max - self.t_min) * gate

    def extra_repr(self) -> str:
        return f"t_min={self.t_min}, t_max={self.t_max}"


class MutualLoss(nn.Module):
    r"""Graph mutual learning over K peers (METHODS.md §5): the loss of every peer k,

    .. math:: L_k = \mathrm{CE}(z_k, y) + \lambda_{kd}\,\mathrm{KL}(q_{-k} \,\|\, p_k^T)
              - \lambda_{ent}\,H(p_k^T),

    with :math:`p_k^T = \mathrm{softmax}(z_k / T_v)` and the target
    :math:`q_{-k} = \mathrm{softmax}(\sum_{j \ne k} \alpha_{j,v} z_j / T_v)` built from the
    *detached* logits of the other peers (as deep mutual learning does). With ``adaptive``, the
    weights :math:`\alpha_{\cdot,v}` (a softmax over the other peers) and :math:`T_v` come from
    a trainable :class:`AdaptiveLogitWeighting` unit, which receives gradients through the
    targets and the temperature; without it the weights are uniform and ``T = temperature``
    everywhere (``lambda_ent = 0`` then gives deep mutual learning with the peers' averaged
    logits as target, exactly DML for K = 2).

    The entropy term is subtracted, so ``lambda_ent > 0`` rewards peers for keeping their
    softened predictions spread out (a confidence penalty that keeps what they exchange
    informative); a negative value would sharpen them. The KL and entropy terms are means over
    the rows (all nodes, or ``nodes``); the cross-entropy covers ``rows`` of ``target`` (None:
    all rows; no target: no CE term). Each peer's KL has no :math:`T^2` factor (the temperature
    is bounded and learnt, so the scale is left to ``lambda_kd``).

    ``forward(logits: list of K [n, C], target=None, rows=None, nodes=None) -> [K]``: the K
    peers' losses; ``.sum().backward()`` trains all peers (and the unit) in one step.

    Example:
        >>> mutual = MutualLoss(3)
        >>> losses = mutual([gcn_logits, gat_logits, sage_logits], y, train_mask)
        >>> losses.sum().backward()
    """

    def __init__(self, num_peers: int, lambda_kd: float = 1.0, lambda_ent: float = 0.1,
                 adaptive: bool = True, temperature: float = 1.0, t_min: float = 1.0,
                 t_max: float = 4.0):
        super().__init__()
        if int(num_peers) != num_peers or num_peers < 2:
            raise ValueError(f"MutualLoss: 'num_peers' must be an integer >= 2, got {num_peers}")
        for name, v in (("lambda_kd", lambda_kd), ("lambda_ent", lambda_ent),
                        ("temperature", temperature)):
            if not math.isfinite(v):
                raise ValueError(f"MutualLoss: '{name}' must be finite, got {v}")
        if lambda_kd < 0:
            raise ValueError(f"MutualLoss: 'lambda_kd' must be >= 0, got {lambda_kd}")
        if not temperature > 0:
            raise ValueError(f"MutualLoss: 'temperature' must be > 0, got {temperature}")
        self.num_peers, self.lambda_kd, self.lambda_ent = int(num_peers), lambda_kd, lambda_ent
        self.temperature = float(temperature)
        self.alw = AdaptiveLogitWeighting(t_min, t_max) if adaptive else None

    def weights(self, logits):
        """``(alpha [K, K, n], T [n])``: ``alpha[k, j, v]``, the weight of peer j in peer k's
        target at node v (0 for j = k, each ``alpha[k, :, v]`` sums to 1), and the temperature."""
        K, n = len(logits), logits[0].size(0)
        if self.alw is not None:
            scores, T = self.alw(logits)
        else:
            scores = logits[0].new_zeros(K, n)
            T = logits[0].new_full((n,), self.temperature)
        eye = torch.eye(K, dtype=torch.bool, device=scores.device)
        masked = scores.unsqueeze(0).expand(K, K, n).masked_fill(eye.unsqueeze(-1), float("-inf"))
        return torch.softmax(masked, dim=1), T

    def forward(self, logits, target: Optional[Tensor] = None, rows: Optional[Tensor] = None,
                nodes: Optional[Tensor] = None, return_parts: bool = False):
        self._check(logits)
        alpha, T = self.weights(logits)
        z = torch.stack(list(logits))                                 # [K, n, C]
        targets = torch.einsum("kjn,jnc->knc", alpha, z.detach())     # the others, weighted
        Tc = T.unsqueeze(-1)
        log_q = F.log_softmax(targets / Tc, -1)
        log_p = F.log_softmax(z / Tc, -1)
        kl = (log_q.exp() * (log_q - log_p)).sum(-1)                  # [K, n]
        entropy = -(log_p.exp() * log_p).sum(-1)
        if nodes is not None:
            kl, entropy = kl[:, nodes], entropy[:, nodes]
        losses = self.lambda_kd * kl.mean(1) - self.lambda_ent * entropy.mean(1)
        if target is not None:
            ce = torch.stack([F.cross_entropy(_rows(zk, rows), _rows(target, rows)) for zk in logits])
            losses = ce + losses
        if return_parts:
            return losses, {"kl": kl.mean(1).detach(), "entropy": entropy.mean(1).detach()}
        return losses

    def _check(self, logits) -> None:
        if not isinstance(logits, (list, tuple)) or len(logits) != self.num_peers:
            raise ValueError(f"MutualLoss: expected a list of {self.num_peers} peers' logits, got "
                             f"{len(logits) if isinstance(logits, (list, tuple)) else type(logits).__name__}")
        shapes = [tuple(z.shape) for z in logits]
        if any(len(s) != 2 for s in shapes) or len(set(shapes)) != 1:
            raise ValueError(f"MutualLoss: every peer's logits must have the same shape [n, C] "
                             f"(same nodes, same number of classes), got {shapes}")

    def extra_repr(self) -> str:
        return (f"num_peers={self.num_peers}, lambda_kd={self.lambda_kd}, "
                f"lambda_ent={self.lambda_ent}, adaptive={self.alw is not None}"
                + ("" if self.alw is not None else f", temperature={self.temperature}"))
