// CPU kernels of gkd::lsp and gkd::lsp_backward (the LSP kernel-similarity KL loss).
//
// Parallel mapping: destination rows are split into nnz-balanced ranges (parallel_rows); a
// thread owns its rows' outputs (kl[i], stats[i], the row-side gradient grad[i]). The
// source-side gradient is a second pass over the transposed CSR, where a thread owns source
// rows j and adds the contributions of j's outgoing edges to grad[j]. No two threads write the
// same element, so results do not depend on the thread count and need no atomics.
// Feature loops run over contiguous rows with simd reductions; nothing of size E x D exists:
// the forward keeps one row's logits, the backward one scalar pair per edge and space.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "../checks.h"
#include "../lsp_math.h"
#include "csr_values.h"
#include "parallel.h"

namespace gkd {
namespace cpu {
namespace {

using namespace gkd::lsp;

// Neighbour rows are random gathers: request every cache line of a row a few edges ahead, not
// just its first (a 128-wide float row spans eight lines).
template <typename T>
inline void prefetch_row(const T* p, int64_t D) {
  const char* c = reinterpret_cast<const char*>(p);
  const int64_t bytes = D * static_cast<int64_t>(sizeof(T));
  for (int64_t b = 0; b < bytes; b += 64) __builtin_prefetch(c + b, 0, 1);
}
constexpr int64_t kAhead = 6;

// The per-edge feature reductions of lsp_math.h, fused into one pass over the two rows:
// x = sum (a-b)^2 | sum |a-b| | <a,b>, and y = <b,b> for the cosine kernels.
template <typename T>
inline void reduce_edge(K kernel, const T* __restrict a, const T* __restrict b, int64_t D,
                        T& x_out, T& y_out) {
  T x = 0, y = 0;
  const Form form = form_of(kernel);
  if (form == Form::kSq) {
#pragma omp simd reduction(+ : x)
    for (int64_t f = 0; f < D; ++f) { const T d = a[f] - b[f]; x += d * d; }
  } else if (form == Form::kL1) {
#pragma omp simd reduction(+ : x)
    for (int64_t f = 0; f < D; ++f) x += std::abs(a[f] - b[f]);
  } else if (uses_norm(kernel)) {
#pragma omp simd reduction(+ : x, y)
    for (int64_t f = 0; f < D; ++f) { x += a[f] * b[f]; y += b[f] * b[f]; }
  } else {
#pragma omp simd reduction(+ : x)
    for (int64_t f = 0; f < D; ++f) x += a[f] * b[f];
  }
  x_out = x;
  y_out = y;
}

template <typename T>
inline T row_norm(K kernel, const T* __restrict a, int64_t D) {
  if (!uses_norm(kernel)) return T(0);
  T s = 0;
#pragma omp simd reduction(+ : s)
  for (int64_t f = 0; f < D; ++f) s += a[f] * a[f];
  return std::sqrt(s);
}

template <typename T>
inline void axpy(T* __restrict o, const T* __restrict x, T a, int64_t n) {
#pragma omp simd
  for (int64_t f = 0; f < n; ++f) o[f] += a * x[f];
}

// o += w * sign(a - b): the laplacian kernel's derivative direction.
template <typename T>
inline void add_sign(T* __restrict o, const T* __restrict a, const T* __restrict b, T w, int64_t n) {
#pragma omp simd
  for (int64_t f = 0; f < n; ++f) {
    o[f] += w * fsign(a[f] - b[f]);
  }
}

// Everything one feature space (student or teacher) needs in the kernels below.
template <typename T>
struct Space {
  const T* h;
  int64_t D;
  const T* row(int64_t i) const { return h + i * D; }
};

// Forward. Per row: the logits of its edges go to a thread-local buffer (O(max degree)), then
// the row's log-sum-exps and KL are taken over that buffer.
// Numerics: each log-sum-exp subtracts the row maximum before exponentiating, so large logits
// cannot overflow; the KL is formed from logits relative to the row maxima (below), so it is
// never the difference of two large numbers; the sums are accumulated in double.
template <typename T>
void lsp_forward_kernel(const int64_t* rowptr, const int64_t* col, Space<T> S, Space<T> Tt,
                        K kernel, T param, T* kl, T* stats, T* edge_logits, int64_t rows) {
  parallel_rows(rowptr, rows, S.D + Tt.D, [&](int64_t r0, int64_t r1) {
    std::vector<T> buf;
    for (int64_t i = r0; i < r1; ++i) {
      const int64_t e0 = rowptr[i], e1 = rowptr[i + 1], deg = e1 - e0;
      T* st = stats + 3 * i;
      if (deg == 0) {
        kl[i] = st[0] = st[1] = st[2] = T(0);
        continue;
      }
      if (static_cast<int64_t>(buf.size()) < 2 * deg) buf.resize(2 * deg);
      T* ls = buf.data();
      T* lt = buf.data() + deg;
      const T* as = S.row(i);
      const T* at = Tt.row(i);
      const T nas = row_norm(kernel, as, S.D), nat = row_norm(kernel, at, Tt.D);
      T ms = -std::numeric_limits<T>::infinity(), mt = ms;
      for (int64_t e = e0; e < e1; ++e) {
        if (e + kAhead < e1) {
          prefetch_row(S.row(col[e + kAhead]), S.D);
          prefetch_row(Tt.row(col[e + kAhead]), Tt.D);
        }
        const int64_t j = col[e];
        T x, y;
        reduce_edge(kernel, as, S.row(j), S.D, x, y);
        const T s = logit(kernel, param, x, y, nas);
        reduce_edge(kernel, at, Tt.row(j), Tt.D, x, y);
        const T t = logit(kernel, param, x, y, nat);
        ls[e - e0] = s;
        lt[e - e0] = t;
        edge_logits[2 * e] = s;
        edge_logits[2 * e + 1] = t;
        ms = std::max(ms, s);
        mt = std::max(mt, t);
      }
      // With w = exp(l - m) (m the row maximum) and Z = sum w:
      //   kl = sum_k (w_t / Z_t) ((l_t - m_t) - (l_s - m_s)) + log Z_s - log Z_t,
      // one exp per edge and space, and no difference of two large log-sum-exps.
      double zs = 0, zt = 0, a = 0;
      for (int64_t k = 0; k < deg; ++k) {
        const T ds = ls[k] - ms, dt = lt[k] - mt;
        const T wt = std::exp(dt);
        zs += double(std::exp(ds));
        zt += double(wt);
        a += double(wt) * double(dt - ds);
      }
      const double lse_s = double(ms) + std::log(zs), lse_t = double(mt) + std::log(zt);
      const double acc = a / zt + std::log(zs) - std::log(zt);
      kl[i] = T(acc);
      st[0] = T(lse_s);
      st[1] = T(lse_t);
      st[2] = T(acc);
    }
  });
}

// Backward, row pass. For edge e = (j -> i), with g = grad_kl[i]:
//   dL/ds_e = g (p_s - p_t),   dL/dt_e = g p_t (log p_t - log p_s - kl_i),
// the softmaxes recomputed from the saved row log-sum-exps. The row side (d/dh[i]) is added
// to grad[i] while h[j] is in cache; the source side (d/dh[j]) is left as two scalars per edge
// (lsp_math.h: c dk/db = su a + sv b) for the transposed pass.
template <typename T>
void lsp_backward_rows(const int64_t* rowptr, const int64_t* col, Space<T> S, Space<T> Tt,
                       K kernel, T param, const T* stats, const T* edge_logits, const T* gkl,
                       T* gs, T* gt, T* coef_s, T* coef_t, int64_t rows) {
  const bool lap = kernel == K::kLaplacian;
  parallel_rows(rowptr, rows, S.D + Tt.D, [&](int64_t r0, int64_t r1) {
    for (int64_t i = r0; i < r1; ++i) {
      T* gsi = gs ? gs + i * S.D : nullptr;
      T* gti = gt ? gt + i * Tt.D : nullptr;
      if (gsi) std::fill(gsi, gsi + S.D, T(0));
      if (gti) std::fill(gti, gti + Tt.D, T(0));
      const int64_t e0 = rowptr[i], e1 = rowptr[i + 1];
      if (e0 == e1) continue;
      const T g = gkl[i], lse_s = stats[3 * i], lse_t = stats[3 * i + 1], kli = stats[3 * i + 2];
      const T* as = S.row(i);
      const T* at = Tt.row(i);
      const T nas = row_norm(kernel, as, S.D), nat = row_norm(kernel, at, Tt.D);
      T ra_s = 0, ra_t = 0;
      for (int64_t e = e0; e < e1; ++e) {
        if (e + kAhead < e1) {
          if (gsi) prefetch_row(S.row(col[e + kAhead]), S.D);
          if (gti) prefetch_row(Tt.row(col[e + kAhead]), Tt.D);
        }
        const int64_t j = col[e];
        const T* bs = S.row(j);
        const T* bt = Tt.row(j);
        // The logits come from the forward; a space's neighbour row is read only when that
        // space needs a gradient (a frozen teacher costs no gather here).
        const T s = edge_logits[2 * e], t = edge_logits[2 * e + 1];
        // Only the cosine kernels' gradients need the dot products again; the others follow
        // from the logit itself.
        T xs = 0, ys = 0, xt = 0, yt = 0;
        if (gsi && uses_norm(kernel)) reduce_edge(kernel, as, bs, S.D, xs, ys);
        if (gti && uses_norm(kernel)) reduce_edge(kernel, at, bt, Tt.D, xt, yt);
        const T lps = s - lse_s, lpt = t - lse_t;
        const T ps = std::exp(lps), pt = std::exp(lpt);
        if (gsi) {
          const Grad<T> d = grad(kernel, param, g * (ps - pt), s, xs, ys, nas);
          if (lap) add_sign(gsi, as, bs, d.ra, S.D);
          else { ra_s += d.ra; axpy(gsi, bs, d.rb, S.D); }
          coef_s[2 * e] = d.su;
          coef_s[2 * e + 1] = d.sv;
        }
        if (gti) {
          const Grad<T> d = grad(kernel, param, g * pt * (lpt - lps - kli), t, xt, yt, nat);
          if (lap) add_sign(gti, at, bt, d.ra, Tt.D);
          else { ra_t += d.ra; axpy(gti, bt, d.rb, Tt.D); }
          coef_t[2 * e] = d.su;
          coef_t[2 * e + 1] = d.sv;
        }
      }
      if (gsi && !lap) axpy(gsi, as, ra_s, S.D);
      if (gti && !lap) axpy(gti, at, ra_t, Tt.D);
    }
  });
}

// Backward, transposed pass: source j walks its outgoing edges j -> i (t_col[k] = i, forward
// position t_perm[k]) and adds su * h[i] + sv * h[j] (laplacian: su * sign(h[i] - h[j])).
template <typename T>
void lsp_backward_cols(const int64_t* t_rowptr, const int64_t* t_col, const int64_t* t_perm,
                       Space<T> S, Space<T> Tt, K kernel, T* gs, T* gt, const T* coef_s,
                       const T* coef_t, int64_t rows) {
  const bool lap = kernel == K::kLaplacian;
  parallel_rows(t_rowptr, rows, S.D + Tt.D, [&](int64_t r0, int64_t r1) {
    for (int64_t j = r0; j < r1; ++j) {
      const int64_t k0 = t_rowptr[j], k1 = t_rowptr[j + 1];
      if (k0 == k1) continue;
      T* gsj = gs ? gs + j * S.D : nullptr;
      T* gtj = gt ? gt + j * Tt.D : nullptr;
      const T* bs = S.row(j);
      const T* bt = Tt.row(j);
      T sv_s = 0, sv_t = 0;
      for (int64_t k = k0; k < k1; ++k) {
        const int64_t i = t_col[k], e = t_perm[k];
        if (k + kAhead < k1) {
          if (gsj) prefetch_row(S.row(t_col[k + kAhead]), S.D);
          if (gtj) prefetch_row(Tt.row(t_col[k + kAhead]), Tt.D);
        }
        if (gsj) {
          if (lap) add_sign(gsj, S.row(i), bs, coef_s[2 * e], S.D);
          else { axpy(gsj, S.row(i), coef_s[2 * e], S.D); sv_s += coef_s[2 * e + 1]; }
        }
        if (gtj) {
          if (lap) add_sign(gtj, Tt.row(i), bt, coef_t[2 * e], Tt.D);
          else { axpy(gtj, Tt.row(i), coef_t[2 * e], Tt.D); sv_t += coef_t[2 * e + 1]; }
        }
      }
      if (gsj && !lap) axpy(gsj, bs, sv_s, S.D);
      if (gtj && !lap) axpy(gtj, bt, sv_t, Tt.D);
    }
  });
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> lsp_cpu(const at::Tensor& rowptr, const at::Tensor& col,
                                           const at::Tensor& hs_in, const at::Tensor& ht_in,
                                           c10::string_view kernel_name, double param,
                                           const c10::optional<at::Tensor>&,
                                           const c10::optional<at::Tensor>&,
                                           const c10::optional<at::Tensor>&) {
  const char* op = "gkd::lsp";
  const K kernel = check_lsp(op, rowptr, col, hs_in, ht_in, kernel_name, param);
  const int64_t n = rowptr.size(0) - 1;
  check_csr_values(op, {rowptr, col, n, "N, the rows of 'h_s'"});
  const at::Tensor hs = hs_in.contiguous(), ht = ht_in.contiguous();
  at::Tensor kl = at::empty({n}, hs.options());
  at::Tensor stats = at::empty({n, 3}, hs.options());
  at::Tensor edge_logits = at::empty({col.size(0), 2}, hs.options());
  if (n == 0) return {kl, stats, edge_logits};
  AT_DISPATCH_FLOATING_TYPES(hs.scalar_type(), "gkd_lsp_cpu", [&] {
    lsp_forward_kernel<scalar_t>(rowptr.data_ptr<int64_t>(), col.data_ptr<int64_t>(),
                                 {hs.data_ptr<scalar_t>(), hs.size(1)},
                                 {ht.data_ptr<scalar_t>(), ht.size(1)}, kernel,
                                 static_cast<scalar_t>(param), kl.data_ptr<scalar_t>(),
                                 stats.data_ptr<scalar_t>(), edge_logits.data_ptr<scalar_t>(), n);
  });
  return {kl, stats, edge_logits};
}

std::tuple<at::Tensor, at::Tensor> lsp_backward_cpu(
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
  const char* what = "N, the rows of 'h_s'";
  check_csr_values(op, need_s || need_t ? CsrArgs{rowptr, col, n, what, t_rowptr, t_col, t_perm}
                                        : CsrArgs{rowptr, col, n, what});

  const at::Tensor hs = hs_in.contiguous(), ht = ht_in.contiguous();
  const at::Tensor stats = stats_in.contiguous(), gkl = gkl_in.contiguous();
  const at::Tensor edge_logits = logits_in.contiguous();
  at::Tensor gs = need_s ? at::empty(hs.sizes(), hs.options()) : at::empty({0}, hs.options());
  at::Tensor gt = need_t ? at::empty(ht.sizes(), ht.options()) : at::empty({0}, ht.options());
  if ((!need_s && !need_t) || n == 0) return {gs, gt};
  // Two scalars per edge and space (the source-side coefficients): O(E), never O(E x D).
  at::Tensor coef_s = need_s ? at::empty({E, 2}, hs.options()) : at::Tensor();
  at::Tensor coef_t = need_t ? at::empty({E, 2}, hs.options()) : at::Tensor();
  AT_DISPATCH_FLOATING_TYPES(hs.scalar_type(), "gkd_lsp_backward_cpu", [&] {
    const Space<scalar_t> S{hs.data_ptr<scalar_t>(), hs.size(1)};
    const Space<scalar_t> Tt{ht.data_ptr<scalar_t>(), ht.size(1)};
    scalar_t* gsp = need_s ? gs.data_ptr<scalar_t>() : nullptr;
    scalar_t* gtp = need_t ? gt.data_ptr<scalar_t>() : nullptr;
    scalar_t* csp = need_s ? coef_s.data_ptr<scalar_t>() : nullptr;
    scalar_t* ctp = need_t ? coef_t.data_ptr<scalar_t>() : nullptr;
    const scalar_t p = static_cast<scalar_t>(param);
    lsp_backward_rows<scalar_t>(rowptr.data_ptr<int64_t>(), col.data_ptr<int64_t>(), S, Tt, kernel,
                                p, stats.data_ptr<scalar_t>(), edge_logits.data_ptr<scalar_t>(),
                                gkl.data_ptr<scalar_t>(), gsp, gtp, csp, ctp, n);
    lsp_backward_cols<scalar_t>(t_rowptr->data_ptr<int64_t>(), t_col->data_ptr<int64_t>(),
                                t_perm->data_ptr<int64_t>(), S, Tt, kernel, gsp, gtp, csp, ctp, n);
  });
  return {gs, gt};
}

}  // namespace

TORCH_LIBRARY_IMPL(gkd, CPU, m) {
  m.impl("lsp", &lsp_cpu);
  m.impl("lsp_backward", &lsp_backward_cpu);
}

}  // namespace cpu
}  // namespace gkd
