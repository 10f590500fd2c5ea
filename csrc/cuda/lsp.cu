// CUDA kernels of gkd::lsp and gkd::lsp_backward (the LSP kernel-similarity KL loss).
//
// Each pass is split so that no warp walks a whole high-degree row doing D-wide work per edge
// (power-law graphs have rows with 10^4-10^5 edges):
//   forward   1. edge_logits: a group of G lanes per edge computes the two kernel logits
//                (feature reductions over vector loads, a shuffle reduction in the group);
//                they go to an O(E) scalar buffer.
//             2. row_kl: a warp per destination row folds its edges' logits (lanes stride
//                over the edges) into a mergeable log-sum-exp/KL state, merged by shuffles.
//   backward  3. edge_grad: a group per edge recomputes the logits, the softmaxes from the
//                saved row log-sum-exps, and stores four scalars per edge and space: the
//                kernel derivative in the form c dk/da = ra a + rb b, c dk/db = su a + sv b.
//             4. node_grad: a warp per (node, chunk of 32*VEC features) gathers those over the
//                node's incoming edges (forward CSR, row side) and its outgoing edges (the
//                transposed CSR, source side) in registers and writes its gradient slice once:
//                no atomics, a fixed summation order, so the backward is deterministic.
// Features are read as 16-byte vectors when both widths allow it, and accumulated in
// at::opmath_type (float32 for half/bfloat16). Flattened offsets are int64.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <limits>

#include "../checks.h"
#include "../lsp_math.h"
#include "common.cuh"
#include "csr_values.cuh"

namespace gkd {
namespace cuda {
namespace {

using namespace gkd::lsp;

// The destination of edge e: the row i with rowptr[i] <= e < rowptr[i + 1].
__device__ __forceinline__ int64_t row_of_edge(const int64_t* rowptr, int64_t n, int64_t e) {
  int64_t lo = 0, hi = n;  // rowptr[lo] <= e < rowptr[hi]
  while (hi - lo > 1) {
    const int64_t mid = lo + (hi - lo) / 2;
    if (rowptr[mid] <= e) lo = mid; else hi = mid;
  }
  return lo;
}

// The per-edge feature reductions of lsp_math.h over one space, by the G lanes of a group:
// x = sum (a-b)^2 | sum |a-b| | <a,b>; for the dot form also y = <b,b> and z = <a,a>.
// Every lane of the warp takes part in the group sums the same number of times: lanes without
// work pass zeros instead of leaving early, so the full warp mask is right.
template <Form FORM, int VEC, int G, typename T, typename A>
__device__ __forceinline__ void edge_reduce(const T* a, const T* b, int64_t D, int lane,
                                            bool valid, A& x, A& y, A& z) {
  x = y = z = A(0);
  if (valid) {
    const int64_t chunks = D / VEC;
    for (int64_t c = lane; c < chunks; c += G) {
      const Vec<T, VEC> va = load_vec<T, VEC>(a + c * VEC);
      const Vec<T, VEC> vb = load_vec<T, VEC>(b + c * VEC);
#pragma unroll
      for (int k = 0; k < VEC; ++k) {
        const A ak = static_cast<A>(va.v[k]), bk = static_cast<A>(vb.v[k]);
        if (FORM == Form::kSq) {
          const A d = ak - bk;
          x += d * d;
        } else if (FORM == Form::kL1) {
          x += fabs_(ak - bk);
        } else {
          x += ak * bk;
          y += bk * bk;
          z += ak * ak;
        }
      }
    }
  }
  x = group_sum(x, kFullMask, G);
  if (FORM == Form::kDot) {
    y = group_sum(y, kFullMask, G);
    z = group_sum(z, kFullMask, G);
  }
}

template <int VEC, int G, typename T, typename A>
__device__ __forceinline__ void edge_reduce_any(Form form, const T* a, const T* b, int64_t D,
                                                int lane, bool valid, A& x, A& y, A& z) {
  // 'form' is the same for every lane, so the branch is uniform and the shuffles inside match.
  if (form == Form::kSq) edge_reduce<Form::kSq, VEC, G>(a, b, D, lane, valid, x, y, z);
  else if (form == Form::kL1) edge_reduce<Form::kL1, VEC, G>(a, b, D, lane, valid, x, y, z);
  else edge_reduce<Form::kDot, VEC, G>(a, b, D, lane, valid, x, y, z);
}

// What a lane of the edge kernels works on: edge e = tid / G (G lanes per edge; lanes past E
// are not valid but still join the group sums), its endpoints i (row) and j (column), and the
// feature reductions of both spaces: (xs, ys, zs) student, (xt, yt, zt) teacher.
template <typename A>
struct EdgePair {
  int64_t e, i, j;
  int lane;
  bool valid;
  A xs, ys, zs, xt, yt, zt;
};

template <int VEC, int G, typename T, typename A>
__device__ __forceinline__ EdgePair<A> reduce_edge_pair(const int64_t* rowptr, const int64_t* col,
                                                        const T* hs, int64_t Ds, const T* ht,
                                                        int64_t Dt, Form form, int64_t n,
                                                        int64_t E) {
  EdgePair<A> p;
  const int64_t tid = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  p.e = tid / G;
  p.lane = static_cast<int>(threadIdx.x % G);
  p.valid = p.e < E;
  p.i = p.valid ? row_of_edge(rowptr, n, p.e) : 0;
  p.j = p.valid ? col[p.e] : 0;
  edge_reduce_any<VEC, G>(form, hs + p.i * Ds, hs + p.j * Ds, Ds, p.lane, p.valid, p.xs, p.ys, p.zs);
  edge_reduce_any<VEC, G>(form, ht + p.i * Dt, ht + p.j * Dt, Dt, p.lane, p.valid, p.xt, p.yt, p.zt);
  return p;
}

// ---------------------------------------------------------------- forward
// One group of G lanes per edge; exactly enough threads are launched, so there is no loop
// whose trip count could differ between the groups of a warp.
template <typename T, typename A, int VEC, int G>
__global__ void lsp_edge_logits_kernel(const int64_t* __restrict__ rowptr,
                                       const int64_t* __restrict__ col, const T* __restrict__ hs,
                                       int64_t Ds, const T* __restrict__ ht, int64_t Dt,
                                       K kernel, Form form, A param, A* __restrict__ logits,
                                       int64_t n, int64_t E) {
  const EdgePair<A> p = reduce_edge_pair<VEC, G, T, A>(rowptr, col, hs, Ds, ht, Dt, form, n, E);
  if (p.valid && p.lane == 0) {
    logits[2 * p.e] = logit(kernel, param, p.xs, p.ys, fsqrt(p.zs));
    logits[2 * p.e + 1] = logit(kernel, param, p.xt, p.yt, fsqrt(p.zt));
  }
}

// Online log-sum-exp with the KL carried along. For a set of edges with maxima (ms, mt):
//   zs = sum exp(s - ms),  zt = sum exp(t - mt),  a = sum exp(t - mt) ((t - mt) - (s - ms)),
// so that lse = m + log z and kl = a / zt + log zs - log zt. Two states merge exactly by
// rescaling to the larger maxima (a also shifts by zt times the change of the offsets); no
// exp ever sees a positive argument, so large logits cannot overflow, and the KL is never a
// difference of two large log-sum-exps. zt = 0 marks the empty state (a non-empty one has
// zt >= 1: its maximum contributes exp(0)).
template <typename A>
struct RowState {
  A ms, zs, mt, zt, a;
};

template <typename A>
__device__ __forceinline__ RowState<A> merge(const RowState<A>& p, const RowState<A>& q) {
  if (q.zt == A(0)) return p;
  if (p.zt == A(0)) return q;
  RowState<A> r;
  r.ms = fmax2(p.ms, q.ms);
  r.mt = fmax2(p.mt, q.mt);
  const A ps = fexp(p.ms - r.ms), qs = fexp(q.ms - r.ms);
  const A pt = fexp(p.mt - r.mt), qt = fexp(q.mt - r.mt);
  r.zs = p.zs * ps + q.zs * qs;
  r.zt = p.zt * pt + q.zt * qt;
  r.a = pt * (p.a + p.zt * ((p.mt - r.mt) - (p.ms - r.ms))) +
        qt * (q.a + q.zt * ((q.mt - r.mt) - (q.ms - r.ms)));
  return r;
}

// One warp per destination row (the row index is warp-uniform, so a warp past the end leaves
// as a whole and the shuffles below always have all 32 lanes).
template <typename T, typename A>
__global__ void lsp_row_kl_kernel(const int64_t* __restrict__ rowptr, const A* __restrict__ logits,
                                  T* __restrict__ kl, A* __restrict__ stats, int64_t n) {
  const int64_t row = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) / kWarp;
  const int lane = static_cast<int>(threadIdx.x % kWarp);
  if (row >= n) return;
  RowState<A> st{A(0), A(0), A(0), A(0), A(0)};
  const int64_t e1 = rowptr[row + 1];
  for (int64_t e = rowptr[row] + lane; e < e1; e += kWarp) {
    st = merge(st, RowState<A>{logits[2 * e], A(1), logits[2 * e + 1], A(1), A(0)});
  }
#pragma unroll
  for (int off = kWarp / 2; off > 0; off >>= 1) {
    RowState<A> o;
    o.ms = __shfl_xor_sync(kFullMask, st.ms, off);
    o.zs = __shfl_xor_sync(kFullMask, st.zs, off);
    o.mt = __shfl_xor_sync(kFullMask, st.mt, off);
    o.zt = __shfl_xor_sync(kFullMask, st.zt, off);
    o.a = __shfl_xor_sync(kFullMask, st.a, off);
    st = merge(st, o);
  }
  if (lane == 0) {
    A* s = stats + 3 * row;
    if (st.zt == A(0)) {
      kl[row] = static_cast<T>(0);
      s[0] = s[1] = s[2] = A(0);
    } else {
      const A lzs = flog(st.zs), lzt = flog(st.zt);
      const A v = st.a / st.zt + lzs - lzt;
      kl[row] = static_cast<T>(v);
      s[0] = st.ms + lzs;
      s[1] = st.mt + lzt;
      s[2] = v;
    }
  }
}

// ---------------------------------------------------------------- backward
// Per edge e = (j -> i), g = grad_kl[i]: dL/ds = g (p_s - p_t), dL/dt = g p_t (log p_t -
// log p_s - kl_i), the softmaxes recomputed from row i's saved log-sum-exps. Stores
// (ra, rb, su, sv) of lsp_math.h's grad() at coef[4 e] for each space asked for.
template <typename T, typename A, int VEC, int G>
__global__ void lsp_edge_grad_kernel(const int64_t* __restrict__ rowptr,
                                     const int64_t* __restrict__ col, const T* __restrict__ hs,
                                     int64_t Ds, const T* __restrict__ ht, int64_t Dt, K kernel,
                                     Form form, A param, const A* __restrict__ stats,
                                     const T* __restrict__ gkl, A* __restrict__ coef_s,
                                     A* __restrict__ coef_t, int64_t n, int64_t E) {
  const EdgePair<A> p = reduce_edge_pair<VEC, G, T, A>(rowptr, col, hs, Ds, ht, Dt, form, n, E);
  if (!p.valid || p.lane != 0) return;
  const int64_t i = p.i;
  const A nas = fsqrt(p.zs), nat = fsqrt(p.zt);
  const A s = logit(kernel, param, p.xs, p.ys, nas), t = logit(kernel, param, p.xt, p.yt, nat);
  const A lps = s - stats[3 * i], lpt = t - stats[3 * i + 1], kli = stats[3 * i + 2];
  const A g = static_cast<A>(gkl[i]);
  const A ps = fexp(lps), pt = fexp(lpt);
  if (coef_s) {
    const Grad<A> d = grad(kernel, param, g * (ps - pt), s, p.xs, p.ys, nas);
    A* c = coef_s + 4 * p.e;
    c[0] = d.ra; c[1] = d.rb; c[2] = d.su; c[3] = d.sv;
  }
  if (coef_t) {
    const Grad<A> d = grad(kernel, param, g * pt * (lpt - lps - kli), t, p.xt, p.yt, nat);
    A* c = coef_t + 4 * p.e;
    c[0] = d.ra; c[1] = d.rb; c[2] = d.su; c[3] = d.sv;
  }
}

// One warp per (node v, chunk of 32*VEC features); lane l owns features [f0, f0 + VEC).
//   grad[v] = sum_{e=(j->v)} (ra_e h[v] + rb_e h[j])  +  sum_{e=(v->i)} (su_e h[i] + sv_e h[v])
// (laplacian: ra_e sign(h[v] - h[j]) and su_e sign(h[i] - h[v])). No shuffles here, so lanes
// past the feature width may leave early.
template <typename T, typename A, int VEC>
__global__ void lsp_node_grad_kernel(const int64_t* __restrict__ rowptr,
                                     const int64_t* __restrict__ col,
                                     const int64_t* __restrict__ t_rowptr,
                                     const int64_t* __restrict__ t_col,
                                     const int64_t* __restrict__ t_perm, const T* __restrict__ h,
                                     int64_t D, const A* __restrict__ coef, bool lap,
                                     T* __restrict__ grad_out, int64_t n, int64_t chunks) {
  const int64_t warp = (static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) / kWarp;
  const int lane = static_cast<int>(threadIdx.x % kWarp);
  const int64_t v = warp / chunks;
  const int64_t f0 = ((warp % chunks) * kWarp + lane) * VEC;
  if (v >= n || f0 >= D) return;
  A own[VEC], acc[VEC];
  {
    const Vec<T, VEC> x = load_vec<T, VEC>(h + v * D + f0);
#pragma unroll
    for (int k = 0; k < VEC; ++k) {
      own[k] = static_cast<A>(x.v[k]);
      acc[k] = A(0);
    }
  }
  A diag = A(0);
  const int64_t e1 = rowptr[v + 1];
#pragma unroll 4
  for (int64_t e = rowptr[v]; e < e1; ++e) {
    const A* c = coef + 4 * e;
    const Vec<T, VEC> b = load_vec<T, VEC>(h + col[e] * D + f0);
    if (lap) {
      const A w = c[0];
#pragma unroll
      for (int k = 0; k < VEC; ++k) acc[k] += w * fsign(own[k] - static_cast<A>(b.v[k]));
    } else {
      const A w = c[1];
      diag += c[0];
#pragma unroll
      for (int k = 0; k < VEC; ++k) acc[k] += w * static_cast<A>(b.v[k]);
    }
  }
  const int64_t k1 = t_rowptr[v + 1];
#pragma unroll 4
  for (int64_t k = t_rowptr[v]; k < k1; ++k) {
    const A* c = coef + 4 * t_perm[k];
    const Vec<T, VEC> a = load_vec<T, VEC>(h + t_col[k] * D + f0);
    const A w = c[2];
    if (lap) {
#pragma unroll
      for (int q = 0; q < VEC; ++q) acc[q] += w * fsign(static_cast<A>(a.v[q]) - own[q]);
    } else {
      diag += c[3];
#pragma unroll
      for (int q = 0; q < VEC; ++q) acc[q] += w * static_cast<A>(a.v[q]);
    }
  }
  Vec<T, VEC> out;
#pragma unroll
  for (int k = 0; k < VEC; ++k) out.v[k] = static_cast<T>(acc[k] + diag * own[k]);
  store_vec<T, VEC>(grad_out + v * D + f0, out);
}

// ---------------------------------------------------------------- launch helpers
// Whether every row of t [N, D] can be read with the widest vector, max_vec<T>() elements.
template <typename T>
bool full_vec(const at::Tensor& t) {
  return vec_width(t.size(1), sizeof(T), t.data_ptr()) == max_vec<T>();
}

inline int64_t blocks_for(int64_t threads, const char* op) {
  const int64_t b = (threads + kThreads - 1) / kThreads;
  TORCH_CHECK(b <= std::numeric_limits<int32_t>::max(), op, ": graph too large for one launch (",
              threads, " threads)");
  return b;
}

// Calls f(std::integral_constant VEC, std::integral_constant G) for the edge kernels: 16-byte
// loads when both widths allow them, and 8-lane groups when the widest row has <= 8 chunks.
template <typename T, typename F>
void with_edge_config(const at::Tensor& hs, const at::Tensor& ht, const F& f) {
  constexpr int V = max_vec<T>();
  const bool vec = full_vec<T>(hs) && full_vec<T>(ht);
  const int64_t chunks = std::max(hs.size(1), ht.size(1)) / (vec ? V : 1);
  const bool small = chunks <= 8;
  if (vec) {
    if (small) f(std::integral_constant<int, V>(), std::integral_constant<int, 8>());
    else f(std::integral_constant<int, V>(), std::integral_constant<int, 32>());
  } else {
    if (small) f(std::integral_constant<int, 1>(), std::integral_constant<int, 8>());
    else f(std::integral_constant<int, 1>(), std::integral_constant<int, 32>());
  }
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> lsp_cuda(const at::Tensor& rowptr, const at::Tensor& col,
                                            const at::Tensor& hs_in, const at::Tensor& ht_in,
                                            c10::string_view kernel_name, double param,
                                            const c10::optional<at::Tensor>&,
                                            const c10::optional<at::Tensor>&,
                                            const c10::optional<at::Tensor>&) {
  const char* op = "gkd::lsp";
  const K kernel = check_lsp(op, rowptr, col, hs_in, ht_in, kernel_name, param);
  const c10::cuda::CUDAGuard guard(hs_in.device());
  const int64_t n = rowptr.size(0) - 1, E = col.size(0);
  check_csr_values_cuda(op, {rowptr, col, n, "N, the rows of 'h_s'"});
  const at::Tensor hs = hs_in.contiguous(), ht = ht_in.contiguous();
  const auto acc_type = stat_dtype(hs);
  at::Tensor kl = at::empty({n}, hs.options());
  at::Tensor stats = at::empty({n, 3}, hs.options().dtype(acc_type));
  at::Tensor logits = at::empty({std::max<int64_t>(E, 1), 2}, hs.options().dtype(acc_type));
  if (n == 0) return {kl, stats, logits.narrow(0, 0, E)};
  const auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, hs.scalar_type(), "gkd_lsp_cuda", [&] {
    using A = at::opmath_type<scalar_t>;
    if (E > 0) {
      with_edge_config<scalar_t>(hs, ht, [&](auto vec, auto group) {
        constexpr int VEC = decltype(vec)::value, G = decltype(group)::value;
        lsp_edge_logits_kernel<scalar_t, A, VEC, G>
            <<<blocks_for(E * G, op), kThreads, 0, stream>>>(
                rowptr.data_ptr<int64_t>(), col.data_ptr<int64_t>(), hs.data_ptr<scalar_t>(),
                hs.size(1), ht.data_ptr<scalar_t>(), ht.size(1), kernel, form_of(kernel),
                static_cast<A>(param), logits.data_ptr<A>(), n, E);
        C10_CUDA_KERNEL_LAUNCH_CHECK();
      });
    }
    lsp_row_kl_kernel<scalar_t, A><<<blocks_for(n * kWarp, op), kThreads, 0, stream>>>(
        rowptr.data_ptr<int64_t>(), logits.data_ptr<A>(), kl.data_ptr<scalar_t>(),
        stats.data_ptr<A>(), n);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  // The per-edge logits are saved for the backward's interface; the CUDA backward recomputes
  // them in its edge pass, which costs no more than reading them back.
  return {kl, stats, logits.narrow(0, 0, E)};
}

template <typename T, typename A>
void launch_node_grad(const at::Tensor& rowptr, const at::Tensor& col, const at::Tensor& t_rowptr,
                      const at::Tensor& t_col, const at::Tensor& t_perm, const at::Tensor& h,
                      const at::Tensor& coef, bool lap, at::Tensor& grad_out, cudaStream_t stream,
                      const char* op) {
  const int64_t n = h.size(0), D = h.size(1);
  if (n == 0 || D == 0) return;
  constexpr int V = max_vec<T>();
  auto go = [&](auto vec) {
    constexpr int VEC = decltype(vec)::value;
    const int64_t chunks = (D + kWarp * VEC - 1) / (kWarp * VEC);
    lsp_node_grad_kernel<T, A, VEC><<<blocks_for(n * chunks * kWarp, op), kThreads, 0, stream>>>(
        rowptr.data_ptr<int64_t>(), col.data_ptr<int64_t>(), t_rowptr.data_ptr<int64_t>(),
        t_col.data_ptr<int64_t>(), t_perm.data_ptr<int64_t>(), h.data_ptr<T>(), D,
        coef.data_ptr<A>(), lap, grad_out.data_ptr<T>(), n, chunks);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  };
  // grad_out is freshly allocated, so its alignment matches h's when the width allows it.
  if (full_vec<T>(h) && full_vec<T>(grad_out)) go(std::integral_constant<int, V>());
  else go(std::integral_constant<int, 1>());
}

std::tuple<at::Tensor, at::Tensor> lsp_backward_cuda(
    const at::Tensor& rowptr, const at::Tensor& col, const at::Tensor& hs_in,
    const at::Tensor& ht_in, const at::Tensor& stats_in, const at::Tensor& logits_in,
    const at::Tensor& gkl_in, c10::string_view kernel_name, double param,
    const c10::optional<at::Tensor>& t_rowptr,
    const c10::optional<at::Tensor>& t_col, const c10::optional<at::Tensor>& t_perm, bool need_s,
    bool need_t) {
  const char* op = "gkd::lsp_backward";
  const K kernel = check_lsp(op, rowptr, col, hs_in, ht_in, kernel_name, param);
  const int64_t n = rowptr.size(0) - 1, E = col.size(0);
  check_lsp_backward_all(op, col, stats_in, logits_in, gkl_in, hs_in, n, t_rowptr, t_col, t_perm,
                         need_s || need_t);
  const c10::cuda::CUDAGuard guard(hs_in.device());
  const char* what = "N, the rows of 'h_s'";
  check_csr_values_cuda(op, need_s || need_t ? CsrArgs{rowptr, col, n, what, t_rowptr, t_col, t_perm}
                                             : CsrArgs{rowptr, col, n, what});

  const at::Tensor hs = hs_in.contiguous(), ht = ht_in.contiguous();
  const at::Tensor stats = stats_in.contiguous(), gkl = gkl_in.contiguous();
  at::Tensor gs = need_s ? at::empty(hs.sizes(), hs.options()) : at::empty({0}, hs.options());
  at::Tensor gt = need_t ? at::empty(ht.sizes(), ht.options()) : at::empty({0}, ht.options());
  if ((!need_s && !need_t) || n == 0) return {gs, gt};
  // Four scalars per edge and space: O(E), never O(E x D).
  const auto acc_opts = stats.options();
  at::Tensor coef_s = need_s ? at::empty({std::max<int64_t>(E, 1), 4}, acc_opts) : at::Tensor();
  at::Tensor coef_t = need_t ? at::empty({std::max<int64_t>(E, 1), 4}, acc_opts) : at::Tensor();
  const auto stream = c10::cuda::getCurrentCUDAStream();
  const bool lap = kernel == K::kLaplacian;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, hs.scalar_type(), "gkd_lsp_backward_cuda", [&] {
    using A = at::opmath_type<scalar_t>;
    if (E > 0) {
      with_edge_config<scalar_t>(hs, ht, [&](auto vec, auto group) {
        constexpr int VEC = decltype(vec)::value, G = decltype(group)::value;
        lsp_edge_grad_kernel<scalar_t, A, VEC, G><<<blocks_for(E * G, op), kThreads, 0, stream>>>(
            rowptr.data_ptr<int64_t>(), col.data_ptr<int64_t>(), hs.data_ptr<scalar_t>(),
            hs.size(1), ht.data_ptr<scalar_t>(), ht.size(1), kernel, form_of(kernel),
            static_cast<A>(param), stats.data_ptr<A>(), gkl.data_ptr<scalar_t>(),
            need_s ? coef_s.data_ptr<A>() : nullptr, need_t ? coef_t.data_ptr<A>() : nullptr, n, E);
        C10_CUDA_KERNEL_LAUNCH_CHECK();
      });
    }
    if (need_s)
      launch_node_grad<scalar_t, A>(rowptr, col, *t_rowptr, *t_col, *t_perm, hs, coef_s, lap, gs,
                                    stream, op);
    if (need_t)
      launch_node_grad<scalar_t, A>(rowptr, col, *t_rowptr, *t_col, *t_perm, ht, coef_t, lap, gt,
                                    stream, op);
  });
  return {gs, gt};
}

}  // namespace

TORCH_LIBRARY_IMPL(gkd, CUDA, m) {
  m.impl("lsp", &lsp_cuda);
  m.impl("lsp_backward", &lsp_backward_cuda);
}

}  // namespace cuda
}  // namespace gkd
