r"""Framelet models (METHODS.md §6): the SpatUFG teacher and the FMLP-O / FMLP-S students.

Both read the operators :func:`framelet_operators` builds once per graph (``prepare``): the
Chebyshev framelet transform :class:`~gkd_ext.framelet.FrameletTransform` with frame elements
:math:`W_e` and the GCN propagation :math:`\hat A = \tilde D^{-1/2}(A + I)\tilde D^{-1/2}`.
Nothing here forms an ``N x N`` matrix.

- :class:`SpatUFG` (spatial undecimated framelet GNN): a layer is
  :math:`\text{out} = \sum_e W_e^\top\, \mathrm{ReLU}(\hat A\, W_e X \Theta_e) + b`
  (for an undirected graph :math:`W_e^\top = W_e`); all elements go through one shared
  Chebyshev basis per level, on the ``[N, E·h]`` stack of the :math:`X\Theta_e`.
- :class:`FMLP` (FMLP-O, FMLP-S): MLP branches over the node features and over the graph
  knowledge :math:`M_e^k X`, :math:`M_e = W_e^\top \hat A W_e`, one branch per frame element
  (low pass and each high pass, each with its own encoder and classifier), fused by sigmoid
  gates. The knowledge is computed once per graph and input (``knowledge="precompute"``), so
  training and inference are an MLP's, or propagated at every forward on ``[N, E·h]`` after
  the encoders (``"propagate"``; memory O(N·E·h) instead of O(N·E·K·F)).
"""
from __future__ import annotations

from typing import Any, Dict, Hashable, List, Optional, Tuple

import torch
from torch import nn
import torch.nn.functional as F

from ..framelet import DEFAULT_ORDER, FrameletTransform
from ..functional import spmm
from ..graph import Graph
from .base import GraphModel, WholeGraphRows, remove_self_loops
from .functional import feature_dropout, feature_linear, leading_rows
from .gcn import gcn_graph

Tensor = torch.Tensor

KNOWLEDGE_MODES = ("auto", "precompute", "propagate")
# "auto" precomputes the knowledge features while they take at most this many bytes.
KNOWLEDGE_BYTES = 1 << 30
# Working set of the knowledge precomputation beyond its result.
KNOWLEDGE_BLOCK_BYTES = 1 << 30


class FrameletOperators:
    """What the framelet models' ``prepare`` returns: ``framelet`` (a
    :class:`~gkd_ext.framelet.FrameletTransform`), ``adj`` (:math:`\\hat A` as a graph with
    values) and a memo of knowledge features per input (:meth:`knowledge`)."""

    def __init__(self, framelet: FrameletTransform, adj: Graph):
        self.framelet = framelet
        self.adj = adj
        self._adj_values: Dict[torch.dtype, Tensor] = {}
        self._memo: Dict[str, Any] = {}

    @property
    def num_elements(self) -> int:
        return self.framelet.num_elements

    def propagate(self, y: Tensor) -> Tensor:
        """Block ``b`` of ``y [N, E·D]`` mapped by :math:`M_b = W_b^\\top \\hat A W_b`: two
        framelet passes and one SpMM, all on the ``E·D`` columns at once."""
        return self.framelet.apply_adjoint(self.smooth(self.framelet.apply(y)))

    def smooth(self, y: Tensor) -> Tensor:
        """:math:`\\hat A y` (in ``y``'s dtype)."""
        value = self._adj_values.get(y.dtype)
        if value is None:
            value = self._adj_values[y.dtype] = self.adj.value.to(y.dtype)
        return spmm(self.adj, y, value)

    @torch.no_grad()
    def knowledge(self, x: Tensor, max_power: int) -> List[List[Tensor]]:
        """``K[e][k-1] = M_e^k x`` for every element ``e`` and ``k = 1..max_power``, each
        ``[N, F]``, computed once per input tensor ``x`` (dense or CSR; kept while the same
        ``x`` comes back) as ``k`` chains of :meth:`propagate`. The map is linear per column,
        so the columns go in blocks whose working set stays near :data:`KNOWLEDGE_BLOCK_BYTES`
        (a CSR ``x`` is densified one block at a time): memory ``E·max_power·N·F`` values for
        the result plus that."""
        memo = self._memo
        if memo.get("x") is x and memo.get("version") == getattr(x, "_version", None) \
                and memo.get("power", 0) >= max_power:
            return [ks[:max_power] for ks in memo["features"]]
        n, f = x.size(0), x.size(1)
        E = self.num_elements
        dtype = x.dtype
        out = [[torch.empty(n, f, dtype=dtype, device=x.device) for _ in range(max_power)]
               for _ in range(E)]
        # Each column of the stacked [N, E·block] input passes through about ten buffers of
        # its size (basis terms, accumulators, the stack).
        block = max(1, min(f, KNOWLEDGE_BLOCK_BYTES // max(1, 10 * n * E * x.element_size())))
        coo = x.to_sparse_coo().coalesce() if x.layout != torch.strided else None
        for start in range(0, f, block):
            stop = min(f, start + block)
            if coo is None:
                part = x[:, start:stop]
            else:
                idx, val = coo.indices(), coo.values()
                keep = (idx[1] >= start) & (idx[1] < stop)
                part = torch.zeros(n, stop - start, dtype=dtype, device=x.device)
                part[idx[0, keep], idx[1, keep] - start] = val[keep]
            z = part.repeat(1, E)
            for k in range(max_power):
                z = self.propagate(z)
                for e, piece in enumerate(z.split(stop - start, dim=1)):
                    out[e][k][:, start:stop] = piece
        self._memo = {"x": x, "version": getattr(x, "_version", None), "power": max_power,
                      "features": out}
        return [ks[:max_power] for ks in out]


def framelet_operators(graph: Graph, filters: str = "haar", levels: int = 1,
                       order: int = DEFAULT_ORDER, scale: float = 2.0,
                       lambda_max: Optional[float] = None) -> FrameletOperators:
    """The operators of the framelet models for ``graph`` (its own self-loops dropped): the
    framelet transform and :math:`\\hat A`. Build once per graph and reuse."""
    g = remove_self_loops(graph)
    adj = gcn_graph(g)
    # Kept in float64 and cast once per dtype used, so float64 runs are exact to rounding.
    adj.value = adj.gcn_norm(torch.ones(adj.num_edges, dtype=torch.float64, device=adj.device))
    return FrameletOperators(FrameletTransform(g, filters, levels, order, scale, lambda_max), adj)


class _FrameletModel(GraphModel):
    def _set_framelet(self, filters, levels, order, scale, lambda_max):
        from ..framelet import FILTER_BANKS, frame_elements
        if filters not in FILTER_BANKS:
            raise ValueError(f"{type(self).__name__}: 'filters' must be one of "
                             f"{list(FILTER_BANKS)}, got {filters!r}")
        for name, value in (("levels", levels), ("order", order)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{type(self).__name__}: {name!r} must be an integer >= 1, "
                                 f"got {value!r}")
        if not (isinstance(scale, (int, float)) and scale > 1):
            raise ValueError(f"{type(self).__name__}: 'scale' must be > 1, got {scale!r}")
        self.framelet_settings = dict(filters=filters, levels=levels, order=order,
                                      scale=float(scale), lambda_max=lambda_max)
        self.num_elements = len(frame_elements(len(FILTER_BANKS[filters]), levels))

    def prepare(self, graph: Graph) -> FrameletOperators:
        return framelet_operators(graph, **self.framelet_settings)

    def prepare_key(self) -> Hashable:
        return ("framelet",) + tuple(sorted(self.framelet_settings.items()))


# ------------------------------------------------------------------ the teacher
class SpatUFGConv(nn.Module):
    """One SpatUFG layer: ``Σ_e W_e^T ReLU(Â W_e x Θ_e) + b`` over the frame elements ``e``
    (``Θ_e`` is ``[in_dim, out_dim]``, Xavier-initialised; ``x`` dense or CSR)."""

    def __init__(self, in_dim: int, out_dim: int, num_elements: int, bias: bool = True):
        super().__init__()
        self.num_elements, self.out_dim = num_elements, out_dim
        self.lin = nn.Linear(in_dim, num_elements * out_dim, bias=False)
        with torch.no_grad():
            for block in self.lin.weight.split(out_dim, dim=0):
                nn.init.xavier_uniform_(block)
        self.bias = nn.Parameter(torch.zeros(out_dim)) if bias else None

    def forward(self, ops: FrameletOperators, x: Tensor) -> Tensor:
        y = torch.relu(ops.smooth(ops.framelet.apply(feature_linear(self.lin, x))))
        out = sum(ops.framelet.apply_adjoint(y).split(self.out_dim, dim=1))
        return out if self.bias is None else out + self.bias


class SpatUFG(_FrameletModel):
    """The spatial undecimated framelet GNN teacher: ``num_layers`` :class:`SpatUFGConv`,
    dropout on every layer's input, no activation between layers (each layer has its ReLU
    inside, as the authors' model). ``forward`` returns the logits and every hidden layer's
    output; ``prepare(graph)`` builds the :func:`framelet_operators`.

    Framelet options: ``filters`` (haar, linear, quadratic), ``levels``, ``order`` (Chebyshev
    coefficients, degree ``order - 1``), ``scale``, ``lambda_max`` (default estimated)."""

    def __init__(self, in_dim: int, hidden: int, out_dim: int, num_layers: int = 2,
                 dropout: float = 0.5, filters: str = "haar", levels: int = 1,
                 order: int = DEFAULT_ORDER, scale: float = 2.0,
                 lambda_max: Optional[float] = None):
        super().__init__()
        self._set_framelet(filters, levels, order, scale, lambda_max)
        dims = [in_dim] + [hidden] * (num_layers - 1) + [out_dim]
        self.convs = nn.ModuleList(SpatUFGConv(a, b, self.num_elements)
                                   for a, b in zip(dims[:-1], dims[1:]))
        self.dropout = dropout
        self._hidden_dims = dims[1:-1]

    def prepare_blocks(self, blocks):
        raise ValueError("SpatUFG mixes the framelet coefficients of every node, so it does not "
                         "run on sampled neighbourhoods (mini-batches): train it on the full "
                         "graph (no --fanouts, --save-models DIR) and load it as the teacher "
                         "(--teacher saved --teacher-ckpt FILE), or distil from a teacher that "
                         "samples (e.g. --teacher gcn)")

    def forward(self, ops: FrameletOperators, x: Tensor) -> Tuple[Tensor, List[Tensor]]:
        hidden = []
        for i, conv in enumerate(self.convs):
            x = conv(ops, feature_dropout(x, self.dropout, self.training))
            if i < len(self.convs) - 1:
                hidden.append(x)
        return x, hidden


# ------------------------------------------------------------------ the students
class FMLP(_FrameletModel):
    r"""The framelet MLP students (FMLP-O with ``single=False``, FMLP-S with ``single=True``).

    Branches: one per frame element ``e`` (with Haar and one level: the low pass and the high
    pass), each with its own encoder ``enc_e: F -> h`` and classifier ``cls_e: h -> C``, plus
    the feature branch ``enc_x``, ``cls_x``; one gate ``att: 2h -> 1`` shared by the branches.
    With ``H = dropout(ReLU(enc(·)))`` and ``α_e = σ(att[H_e ‖ C])``:

    - FMLP-O (``num_layers = L``): layer ``l`` reads the knowledge power ``l``:
      ``H_e^l = H(enc_e(M_e^l X))``; the carrier is ``C^1 = H(enc_x(X))`` and
      ``C^l = H(second(y^{l-1}))``; hidden layers give ``y^l = Σ_e α_e H_e^l + (1 - α_e) C^l``
      and the last ``logits = Σ_e α_e cls_e(H_e^L) + (1 - α_e) cls_x(C^L)``.
    - FMLP-S: one stage on the highest power ``L``: ``C = H(enc_x(X))``,
      ``logits = Σ_e α_e cls_e(H_e^L) + (1 - α_e) cls_x(C)``; its hidden output is
      ``Σ_e α_e H_e^L + (1 - α_e) C``.

    ``knowledge``: ``"precompute"`` computes every ``M_e^k X`` once per graph and input
    (memory ``E·K·N·F`` values; then the model is an MLP), ``"propagate"`` computes
    ``M_e^k (X enc_e)`` at every forward on ``[N, E·h]`` (``3k`` framelet/SpMM passes),
    ``"auto"`` (default) precomputes when that takes at most ``knowledge_bytes`` (1 GiB).
    Both give the same function (the encoders are linear). :meth:`classify` runs the model on
    precomputed knowledge rows, e.g. a batch of nodes; for a trained model, :meth:`encodings`
    computed once and :meth:`head` on their rows make inference an MLP on ``h``-wide inputs.
    The output at a node reads only that node's knowledge rows (``row_wise``), so a sampled
    mini-batch runs on its seeds' rows of the whole graph's knowledge, not on blocks.
    """
    row_wise = True

    def __init__(self, in_dim: int, hidden: int, out_dim: int, num_layers: int = 2,
                 dropout: float = 0.5, single: bool = False, filters: str = "haar",
                 levels: int = 1, order: int = DEFAULT_ORDER, scale: float = 2.0,
                 lambda_max: Optional[float] = None, knowledge: str = "auto",
                 knowledge_bytes: int = KNOWLEDGE_BYTES):
        super().__init__()
        if knowledge not in KNOWLEDGE_MODES:
            raise ValueError(f"FMLP: 'knowledge' must be one of {list(KNOWLEDGE_MODES)}, got "
                             f"{knowledge!r}")
        if num_layers < 1:
            raise ValueError(f"FMLP: 'num_layers' must be >= 1, got {num_layers}")
        self._set_framelet(filters, levels, order, scale, lambda_max)
        E = self.num_elements
        self.single, self.num_layers, self.dropout = bool(single), num_layers, dropout
        self.knowledge_mode, self.knowledge_bytes = knowledge, int(knowledge_bytes)
        self.in_dim, self.hidden = in_dim, hidden
        self.enc = nn.ModuleList(nn.Linear(in_dim, hidden) for _ in range(E))
        self.enc_x = nn.Linear(in_dim, hidden)
        self.second = nn.Linear(hidden, hidden) if (not single and num_layers > 1) else None
        self.att = nn.Linear(2 * hidden, 1)
        self.cls = nn.ModuleList(nn.Linear(hidden, out_dim) for _ in range(E))
        self.cls_x = nn.Linear(hidden, out_dim)
        self._hidden_dims = [hidden] if self.single else [hidden] * (num_layers - 1)

    @property
    def powers(self) -> List[int]:
        """The knowledge powers ``k`` the model reads, in layer order."""
        return [self.num_layers] if self.single else list(range(1, self.num_layers + 1))

    def uses_precomputed(self, num_nodes: int) -> bool:
        """Whether the knowledge is precomputed for a graph of ``num_nodes`` nodes."""
        if self.knowledge_mode != "auto":
            return self.knowledge_mode == "precompute"
        size = self.num_elements * self.num_layers * num_nodes * self.in_dim * 4
        return size <= self.knowledge_bytes

    def _act(self, h: Tensor) -> Tensor:
        return F.dropout(torch.relu(h), self.dropout, self.training)

    def encodings(self, ops: FrameletOperators, x: Tensor) -> List[List[Tensor]]:
        """``enc_e(M_e^k X)`` (before the activation, ``[N, h]``) per element and per power in
        :attr:`powers`: from the precomputed knowledge or propagated, as ``knowledge`` says.
        Computed once for a trained model (under ``torch.no_grad()``), they make inference an
        MLP on ``h``-wide rows: :meth:`head` on any rows of them."""
        if self.uses_precomputed(x.size(0)):
            know = ops.knowledge(x, self.num_layers)
            return [[enc(know[e][k - 1]) for k in self.powers] for e, enc in enumerate(self.enc)]
        weight = torch.cat([enc.weight for enc in self.enc], 0)          # [E·h, F]
        z = feature_linear(_NoBias(weight), x)                            # [N, E·h]
        out: List[List[Tensor]] = [[] for _ in self.enc]
        for k in range(1, self.num_layers + 1):
            z = ops.propagate(z)
            if k in self.powers:
                for e, part in enumerate(z.split(self.hidden, dim=1)):
                    out[e].append(part + self.enc[e].bias)
        return out

    def head(self, enc: List[List[Tensor]], x: Tensor) -> Tuple[Tensor, List[Tensor]]:
        """The model after the knowledge encoders: ``enc[e][i]`` holds ``enc_e(M_e^k X)`` for
        the ``i``-th power of :attr:`powers` on some rows, ``x`` those rows' features."""
        carrier = self._act(feature_linear(self.enc_x, x))
        hidden: List[Tensor] = []
        w_branch, w_carrier = self.att.weight.split(self.hidden, dim=1)   # att[H ‖ C]
        for layer in range(len(self.powers)):
            branches = [self._act(enc_e[layer]) for enc_e in enc]
            gate_c = F.linear(carrier, w_carrier, self.att.bias)
            alphas = [torch.sigmoid(F.linear(h, w_branch) + gate_c) for h in branches]
            if layer < len(self.powers) - 1:
                y = sum(a * h + (1 - a) * carrier for a, h in zip(alphas, branches))
                hidden.append(y)
                carrier = self._act(self.second(y))
                continue
            if self.single:
                hidden.append(sum(a * h + (1 - a) * carrier for a, h in zip(alphas, branches)))
            zx = self.cls_x(carrier)
            logits = sum(a * cls(h) + (1 - a) * zx for a, h, cls in zip(alphas, branches, self.cls))
            return logits, hidden
        raise AssertionError("unreachable")

    def classify(self, knowledge: List[List[Tensor]], x: Tensor) -> Tuple[Tensor, List[Tensor]]:
        """The model on precomputed knowledge rows: ``knowledge[e][k-1]`` holds ``M_e^k X``
        on some rows (``[B, F]``, as :meth:`FrameletOperators.knowledge` gives for all nodes,
        row-sliced) and ``x [B, F]`` the same rows' features. No graph is read."""
        enc = [[self.enc[e](knowledge[e][k - 1]) for k in self.powers]
               for e in range(self.num_elements)]
        return self.head(enc, x)

    def forward(self, ops: FrameletOperators, x: Tensor) -> Tuple[Tensor, List[Tensor]]:
        if isinstance(ops, WholeGraphRows):   # a sampled batch: its rows of the whole graph's
            rows, whole_x = ops.rows, ops.x
            if self.uses_precomputed(whole_x.size(0)):
                know = ops.inputs.knowledge(whole_x, self.num_layers)   # once per run
                enc = [[self.enc[e](know[e][k - 1][rows]) for k in self.powers]
                       for e in range(self.num_elements)]
            else:   # propagated: every step reads the whole graph (SpMM chains on N x h)
                enc = [[h[rows] for h in hs] for hs in self.encodings(ops.inputs, whole_x)]
            return self.head(enc, leading_rows(x, rows.numel()))
        return self.head(self.encodings(ops, x), x)


class _NoBias(nn.Module):
    """A bias-free linear map with a given weight, for :func:`feature_linear`."""

    def __init__(self, weight: Tensor):
        super().__init__()
        self.weight = weight
        self.bias = None

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.weight)


def fmlp_o(in_dim: int, hidden: int, out_dim: int, num_layers: int = 2, **kwargs) -> FMLP:
    """FMLP-O: :class:`FMLP` with ``single=False``."""
    return FMLP(in_dim, hidden, out_dim, num_layers, single=False, **kwargs)


def fmlp_s(in_dim: int, hidden: int, out_dim: int, num_layers: int = 2, **kwargs) -> FMLP:
    """FMLP-S: :class:`FMLP` with ``single=True``."""
    return FMLP(in_dim, hidden, out_dim, num_layers, single=True, **kwargs)


def knowledge_bytes(num_nodes: int, num_features: int, num_elements: int, powers: int,
                    bytes_per_value: int = 4) -> int:
    """Memory of precomputed knowledge features, ``E·K·N·F`` values."""
    return num_elements * powers * num_nodes * num_features * bytes_per_value


__all__ = ["FrameletOperators", "framelet_operators", "SpatUFG", "SpatUFGConv", "FMLP",
           "fmlp_o", "fmlp_s", "KNOWLEDGE_MODES", "knowledge_bytes"]
