// Every op schema of gkd_ext, in one block. Kernels register through TORCH_LIBRARY_IMPL in
// csrc/cpu/<op>.cpp and csrc/cuda/<op>.cu (build_info: csrc/build_info.cpp); Python adds fake
// kernels and autograd (_ops.py). String arguments take the names of csrc/vocab.h.
#include <torch/library.h>

TORCH_LIBRARY(gkd, m) {
  // Every op that walks a CSR checks its index values first (checks.h: CsrFault) and raises a
  // RuntimeError naming the argument, the position and the value: rowptr starts at 0, never
  // decreases and ends at E = len(col); col lies in [0, N_src); a transpose (t_rowptr [N_src + 1],
  // t_col [E] targets, t_perm [E]) has the same E, t_col in [0, N_dst), and t_perm is a
  // permutation mapping transposed edge k (source j) to a graph edge e with col[e] = j and target
  // t_col[k]. Checking costs one O(N + E) pass, cheapest when t_perm increases along each row of
  // the transpose (the order Graph.transpose builds); any other order costs a second pass.
  // The same checks alone, as the kernels run them (nothing is returned): num_src is N_src.
  m.def("check_csr(Tensor rowptr, Tensor col, int num_src, Tensor? t_rowptr=None, "
        "Tensor? t_col=None, Tensor? t_perm=None) -> ()");
  // out[i] = reduce_{e=(j->i)} value[e] * x[j]. Returns (out [N_dst, D], arg): arg holds, for
  // reduce='max', the CSR position of the winning edge per output element (E where a row is
  // empty) and is empty otherwise; a NaN wins (as in torch.amax). t_* is the transposed CSR the
  // backward needs for x; the forward does not read it.
  m.def("spmm(Tensor rowptr, Tensor col, Tensor? value, Tensor x, str reduce, "
        "Tensor? t_rowptr=None, Tensor? t_col=None, Tensor? t_perm=None) -> (Tensor, Tensor)");
  // Gradients of spmm for x (needs t_*) and for value; a gradient not asked for is returned
  // as an empty tensor. Deterministic: no atomics.
  m.def("spmm_backward(Tensor rowptr, Tensor col, Tensor? value, Tensor x, Tensor grad_out, "
        "Tensor arg, str reduce, Tensor? t_rowptr, Tensor? t_col, Tensor? t_perm, "
        "bool need_x, bool need_value) -> (Tensor, Tensor)");
  // out[e, h] = <a[i, h, :], b[j, h, :]> for every edge e=(j->i) and head h: a [N_dst, D],
  // b [N_src, D], D divisible by heads. Output [E, heads]. t_* (checked when given) is the
  // transpose the gradient for b walks.
  m.def("sddmm(Tensor rowptr, Tensor col, Tensor a, Tensor b, int heads=1, "
        "Tensor? t_rowptr=None, Tensor? t_col=None, Tensor? t_perm=None) -> Tensor");
  // Tiled InfoNCE over S = z_s z_t^T / temperature (G-CRD): loss = mean_i [lse_j S_ij - S_ii],
  // and with symmetric=True the mean of that and the same over columns (z_t anchors). z_s [n, D]
  // anchors, z_t [m, D] candidates with m >= n: candidate i < n is anchor i's positive, the
  // rest are extra negatives (m == n when symmetric). Returns (loss [], lse_s [n], lse_t [n]
  // or [0]): the row (and column) log-sum-exps the backward needs; float32 statistics for half
  // inputs. precision: 'ieee' | 'tf32' | 'bf16' (CUDA).
  m.def("infonce(Tensor z_s, Tensor z_t, float temperature, bool symmetric=False, "
        "str precision=\"ieee\") -> (Tensor, Tensor, Tensor)");
  // Gradients of infonce for z_s [n, D] and z_t [m, D] by recomputing the tiles; a gradient
  // not asked for is returned empty. Deterministic for a fixed thread count (CPU) / always (CUDA).
  m.def("infonce_backward(Tensor grad, Tensor z_s, Tensor z_t, Tensor lse_s, Tensor lse_t, "
        "float temperature, bool symmetric, str precision, bool need_s, bool need_t) "
        "-> (Tensor, Tensor)");
  // Tiled GSP: mean_{a,b} (K_s[a,b] - K_t[a,b])^2, kernel in cosine | poly | l2 | rbf
  // (rbf: exp(-gamma ||a-b||^2)); h_s [n, D_s], h_t [n, D_t]. Returns (loss [], sq_s [n],
  // sq_t [n]): the squared norms of the rows the tiles use (for l2/rbf the rows minus their
  // column mean: distances are shift invariant), which the backward reuses.
  // gamma > 0 is read for rbf only (its default lives in gkd_ext/kernels.py).
  m.def("gsp(Tensor h_s, Tensor h_t, str kernel, float gamma) -> (Tensor, Tensor, Tensor)");
  m.def("gsp_backward(Tensor grad, Tensor h_s, Tensor h_t, Tensor sq_s, Tensor sq_t, str kernel, "
        "float gamma, bool need_s, bool need_t) -> (Tensor, Tensor)");

  // LSP loss per destination node: for every edge j->i the kernel logits l_ij = k(h[i], h[j])
  // of student and teacher, P_i = softmax over i's incoming edges, kl[i] = KL(P^t_i || P^s_i)
  // (0 for a node without incoming edges). Square graphs only. kernel: rbf (param = gamma),
  // laplacian (param = sigma), cosine, poly, l2, linear (param unused). Returns (kl [N] in
  // h_s's dtype, stats [N, 3] = (lse_s, lse_t, kl) in float32, float64 for float64 inputs,
  // edge_logits [E, 2] = (l^s_e, l^t_e) in the same dtype): the row log-sum-exps and the
  // per-edge logits (O(E) scalars) the backward rebuilds the softmaxes from. t_* as for spmm.
  m.def("lsp(Tensor rowptr, Tensor col, Tensor h_s, Tensor h_t, str kernel, float param, "
        "Tensor? t_rowptr=None, Tensor? t_col=None, Tensor? t_perm=None) -> (Tensor, Tensor, Tensor)");
  // Gradients of sum_i grad_kl[i] * kl[i] for h_s and h_t (need_s / need_t; a gradient not
  // asked for is an empty tensor). Walks the transposed CSR for the source side: no atomics.
  m.def("lsp_backward(Tensor rowptr, Tensor col, Tensor h_s, Tensor h_t, Tensor stats, "
        "Tensor edge_logits, Tensor grad_kl, str kernel, float param, Tensor? t_rowptr, Tensor? t_col, "
        "Tensor? t_perm, bool need_s, bool need_t) -> (Tensor, Tensor)");

  // One hop of neighbour sampling (mini-batches): for every node of `nodes` (unique global ids,
  // rows of the square CSR rowptr/col by destination), its incoming edges: all of them when
  // fanout = -1 or the degree is <= fanout, else `fanout` uniform draws without replacement
  // (replace=false) or with it. Seeded by `seed` alone (a hash of seed, node and draw index, so
  // CPU and CUDA give the same sample whatever the threads). Returns the block (rowptr [n + 1],
  // col [E'] local source ids, src_nodes [n_src], edge_ids [E']): source ids count first the
  // n `nodes` in order, then new sources in order of first appearance; each row's sampled
  // edges keep their CSR order, and edge_ids are their positions in `col`.
  m.def("sample_neighbors(Tensor rowptr, Tensor col, Tensor nodes, int fanout, bool replace, "
        "int seed) -> (Tensor, Tensor, Tensor, Tensor)");

  // What this build registered: with_cuda (CUDA kernels compiled in), and every gkd op's name
  // with the dispatch keys that have a kernel for it, comma-separated ("CPU,CUDA,Meta,Autograd").
  m.def("build_info() -> (bool with_cuda, str[] ops, str[] keys)");
}
