// CPU kernels of gkd::spmm, gkd::spmm_backward and gkd::sddmm.
//
// Parallel mapping: rows of the CSR (destinations forward, sources in the transposed backward)
// are split into nnz-balanced ranges (parallel_rows). A thread owns its output rows, so no two
// threads write the same element and results do not depend on the thread count. The inner
// loops run over contiguous feature rows with restrict pointers so the compiler vectorises them;
// the output row stays in L1 while the neighbour rows stream in.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <torch/library.h>

#include <limits>

#include "../checks.h"
#include "csr_values.h"
#include "parallel.h"

namespace gkd {
namespace cpu {
namespace {

template <typename T>
inline void axpy(T* __restrict o, const T* __restrict x, T a, int64_t n) {
#pragma omp simd
  for (int64_t f = 0; f < n; ++f) o[f] += a * x[f];
}

// The simd reduction lets the compiler keep several partial sums in vector lanes (a plain
// float loop may not be reassociated, so it would stay scalar).
template <typename T>
inline T dot(const T* __restrict a, const T* __restrict b, int64_t n) {
  T s = 0;
#pragma omp simd reduction(+ : s)
  for (int64_t f = 0; f < n; ++f) s += a[f] * b[f];
  return s;
}

inline void prefetch_row(const void* p) { __builtin_prefetch(p, 0, 1); }

// One row, features [f0, f0 + W) with W fixed at compile time: the W accumulators live in
// vector registers for the whole edge loop instead of being reloaded from the output row.
template <typename T, int W>
inline void row_sum_block(const int64_t* col, const T* value, int64_t e0, int64_t e1, const T* x,
                          int64_t D, int64_t f0, T* __restrict o) {
  T acc[W];
  for (int k = 0; k < W; ++k) acc[k] = T(0);
  for (int64_t e = e0; e < e1; ++e) {
    if (e + 4 < e1) prefetch_row(x + col[e + 4] * D + f0);
    const T* __restrict xj = x + col[e] * D + f0;
    const T v = value ? value[e] : T(1);
#pragma omp simd
    for (int k = 0; k < W; ++k) acc[k] += v * xj[k];
  }
  for (int k = 0; k < W; ++k) o[f0 + k] = acc[k];
}

// Forward, sum or mean. With H heads, head h of edge e scales features [h*F, (h+1)*F).
template <typename T>
void spmm_sum_kernel(const int64_t* rowptr, const int64_t* col, const T* value, const T* x,
                     T* out, int64_t rows, int64_t D, int64_t H, bool mean) {
  const int64_t F = D / H;
  constexpr int W = 64 / sizeof(T) * 4;  // four 64-byte lines: 64 floats, 32 doubles
  const int64_t blocked = H == 1 ? D / W * W : 0;
  parallel_rows(rowptr, rows, D, [&](int64_t r0, int64_t r1) {
    for (int64_t i = r0; i < r1; ++i) {
      T* __restrict o = out + i * D;
      const int64_t e0 = rowptr[i], e1 = rowptr[i + 1];
      for (int64_t f0 = 0; f0 < blocked; f0 += W) row_sum_block<T, W>(col, value, e0, e1, x, D, f0, o);
      if (blocked < D) {
        std::fill(o + blocked, o + D, T(0));
        for (int64_t e = e0; e < e1; ++e) {
          const T* xj = x + col[e] * D;
          if (H == 1) {
            axpy(o + blocked, xj + blocked, value ? value[e] : T(1), D - blocked);
          } else {
            for (int64_t h = 0; h < H; ++h) axpy(o + h * F, xj + h * F, value[e * H + h], F);
          }
        }
      }
      if (mean && e1 > e0) {
        const T inv = T(1) / T(e1 - e0);
        for (int64_t f = 0; f < D; ++f) o[f] *= inv;
      }
    }
  });
}

// Forward, max: per output element the largest value[e]*x[j], and the edge that gave it.
// Empty rows give 0 and the sentinel E. A NaN wins and stays (the first NaN edge), as torch's
// amax propagates NaN whatever the order of the edges.
template <typename T>
void spmm_max_kernel(const int64_t* rowptr, const int64_t* col, const T* value, const T* x,
                     T* out, int64_t* arg, int64_t rows, int64_t D, int64_t H, int64_t E) {
  const int64_t F = D / H;
  parallel_rows(rowptr, rows, D, [&](int64_t r0, int64_t r1) {
    for (int64_t i = r0; i < r1; ++i) {
      T* __restrict o = out + i * D;
      int64_t* __restrict a = arg + i * D;
      const int64_t e0 = rowptr[i], e1 = rowptr[i + 1];
      if (e0 == e1) {
        std::fill(o, o + D, T(0));
        std::fill(a, a + D, E);
        continue;
      }
      std::fill(o, o + D, -std::numeric_limits<T>::infinity());
      std::fill(a, a + D, e0);
      for (int64_t e = e0; e < e1; ++e) {
        const T* xj = x + col[e] * D;
        for (int64_t f = 0; f < D; ++f) {
          const T v = (value ? value[e * H + f / F] : T(1)) * xj[f];
          if (v > o[f] || (v != v && o[f] == o[f]) || e == e0) {
            o[f] = v;
            a[f] = e;
          }
        }
      }
    }
  });
}

// Per-edge, per-head dot products <a[i], b[j]> over the forward CSR. With inv_deg each is
// scaled by 1/deg(i) (mean); with arg only features whose max was won by e count (max).
template <typename T>
void sddmm_kernel(const int64_t* rowptr, const int64_t* col, const T* a, const T* b,
                  const int64_t* arg, T* out, int64_t rows, int64_t D, int64_t H, bool inv_deg) {
  const int64_t F = D / H;
  parallel_rows(rowptr, rows, D, [&](int64_t r0, int64_t r1) {
    for (int64_t i = r0; i < r1; ++i) {
      const T* ai = a + i * D;
      const int64_t e0 = rowptr[i], e1 = rowptr[i + 1];
      const T scale = inv_deg && e1 > e0 ? T(1) / T(e1 - e0) : T(1);
      for (int64_t e = e0; e < e1; ++e) {
        if (e + 4 < e1) prefetch_row(b + col[e + 4] * D);
        const T* bj = b + col[e] * D;
        for (int64_t h = 0; h < H; ++h) {
          T s = 0;
          if (arg) {
            const int64_t* ar = arg + i * D;
            for (int64_t f = h * F; f < (h + 1) * F; ++f)
              if (ar[f] == e) s += ai[f] * bj[f];
          } else {
            s = dot(ai + h * F, bj + h * F, F);
          }
          out[e * H + h] = s * scale;
        }
      }
    }
  });
}

// Fused backward over the transposed CSR: source row j gathers grad_out[i] once per outgoing
// edge and uses it twice, for grad_x[j] (axpy) and for the edge's value gradient (a dot with
// x[j], which stays in cache). grad_value is written at the edge's forward position t_perm[k],
// a distinct slot per edge, so the pass needs no atomics.
// The sum/mean single-head case of the pass below for features [f0, f0 + W): x[j] and the
// grad_x accumulators stay in registers; each edge's value gradient is summed over the blocks.
template <typename T, int W>
inline void src_row_block(const int64_t* t_col, const int64_t* t_perm, const int64_t* rowptr,
                          int64_t k0, int64_t k1, const T* value, const T* xj, const T* g, T* gxj,
                          T* gv, int64_t D, int64_t f0, bool mean) {
  T acc[W], xr[W];
  for (int q = 0; q < W; ++q) {
    acc[q] = T(0);
    xr[q] = xj[f0 + q];
  }
  for (int64_t k = k0; k < k1; ++k) {
    if (k + 4 < k1) prefetch_row(g + t_col[k + 4] * D + f0);
    const int64_t i = t_col[k], e = t_perm[k];
    const T* __restrict gi = g + i * D + f0;
    const T scale = mean ? T(1) / T(rowptr[i + 1] - rowptr[i]) : T(1);
    if (gxj) {
      const T w = (value ? value[e] : T(1)) * scale;
#pragma omp simd
      for (int q = 0; q < W; ++q) acc[q] += w * gi[q];
    }
    if (gv) {
      T s = 0;
#pragma omp simd reduction(+ : s)
      for (int q = 0; q < W; ++q) s += gi[q] * xr[q];
      gv[e] = (f0 == 0 ? T(0) : gv[e]) + s * scale;
    }
  }
  if (gxj)
    for (int q = 0; q < W; ++q) gxj[f0 + q] = acc[q];
}

template <typename T>
void spmm_backward_transposed(const int64_t* t_rowptr, const int64_t* t_col, const int64_t* t_perm,
                              const int64_t* rowptr, const T* value, const T* x, const T* g,
                              const int64_t* arg, T* gx, T* gv, int64_t src_rows, int64_t D,
                              int64_t H, Reduce reduce) {
  const int64_t F = D / H;
  constexpr int W = 64 / sizeof(T) * 4;
  const bool blocked = H == 1 && reduce != Reduce::kMax && D % W == 0;
  parallel_rows(t_rowptr, src_rows, D, [&](int64_t r0, int64_t r1) {
    for (int64_t j = r0; j < r1; ++j) {
      T* __restrict gxj = gx ? gx + j * D : nullptr;
      const T* xj = x + j * D;
      const int64_t k0 = t_rowptr[j], k1 = t_rowptr[j + 1];
      if (blocked) {
        for (int64_t f0 = 0; f0 < D; f0 += W)
          src_row_block<T, W>(t_col, t_perm, rowptr, k0, k1, value, xj, g, gxj, gv, D, f0,
                              reduce == Reduce::kMean);
        continue;
      }
      if (gxj) std::fill(gxj, gxj + D, T(0));
      for (int64_t k = k0; k < k1; ++k) {
        if (k + 4 < k1) prefetch_row(g + t_col[k + 4] * D);
        const int64_t i = t_col[k], e = t_perm[k];
        const T* gi = g + i * D;
        T scale = T(1);
        if (reduce == Reduce::kMean) scale = T(1) / T(rowptr[i + 1] - rowptr[i]);
        for (int64_t h = 0; h < H; ++h) {
          const T v = value ? value[e * H + h] : T(1);
          const int64_t f0 = h * F;
          if (reduce == Reduce::kMax) {
            const int64_t* ai = arg + i * D;
            T s = 0;
            for (int64_t f = f0; f < f0 + F; ++f) {
              if (ai[f] == e) {
                if (gxj) gxj[f] += v * gi[f];
                s += gi[f] * xj[f];
              }
            }
            if (gv) gv[e * H + h] = s;
          } else {
            if (gxj) axpy(gxj + f0, gi + f0, v * scale, F);
            if (gv) gv[e * H + h] = dot(gi + f0, xj + f0, F) * scale;
          }
        }
      }
    }
  });
}

std::tuple<at::Tensor, at::Tensor> spmm_cpu(const at::Tensor& rowptr, const at::Tensor& col,
                                            const c10::optional<at::Tensor>& value,
                                            const at::Tensor& x_in, c10::string_view reduce,
                                            const c10::optional<at::Tensor>&,
                                            const c10::optional<at::Tensor>&,
                                            const c10::optional<at::Tensor>&) {
  const char* op = "gkd::spmm";
  const int64_t H = check_spmm(op, rowptr, col, value, x_in);
  const Reduce r = parse_reduce(op, reduce);
  check_csr_values(op, {rowptr, col, x_in.size(0), "N_src, the rows of 'x'"});
  const at::Tensor x = x_in.contiguous();
  const at::Tensor v = value.has_value() ? value->contiguous() : at::Tensor();
  const int64_t rows = rowptr.size(0) - 1, D = x.size(1), E = col.size(0);
  at::Tensor out = at::empty({rows, D}, x.options());
  at::Tensor arg = r == Reduce::kMax ? at::empty({rows, D}, x.options().dtype(at::kLong))
                             : at::empty({0}, x.options().dtype(at::kLong));
  if (rows == 0 || D == 0) return {out, arg};
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "gkd_spmm_cpu", [&] {
    const scalar_t* vp = v.defined() ? v.data_ptr<scalar_t>() : nullptr;
    if (r == Reduce::kMax) {
      spmm_max_kernel<scalar_t>(rowptr.data_ptr<int64_t>(), col.data_ptr<int64_t>(), vp,
                                x.data_ptr<scalar_t>(), out.data_ptr<scalar_t>(),
                                arg.data_ptr<int64_t>(), rows, D, H, E);
    } else {
      spmm_sum_kernel<scalar_t>(rowptr.data_ptr<int64_t>(), col.data_ptr<int64_t>(), vp,
                                x.data_ptr<scalar_t>(), out.data_ptr<scalar_t>(), rows, D, H,
                                r == Reduce::kMean);
    }
  });
  return {out, arg};
}

std::tuple<at::Tensor, at::Tensor> spmm_backward_cpu(
    const at::Tensor& rowptr, const at::Tensor& col, const c10::optional<at::Tensor>& value,
    const at::Tensor& x_in, const at::Tensor& grad_in, const at::Tensor& arg,
    c10::string_view reduce, const c10::optional<at::Tensor>& t_rowptr,
    const c10::optional<at::Tensor>& t_col, const c10::optional<at::Tensor>& t_perm, bool need_x,
    bool need_value) {
  const char* op = "gkd::spmm_backward";
  const Reduce r = parse_reduce(op, reduce);
  bool transposed = false;
  const int64_t H = check_spmm_backward(op, rowptr, col, value, x_in, grad_in, arg, r, t_rowptr,
                                        t_col, t_perm, need_x, need_value, transposed);
  const int64_t rows = rowptr.size(0) - 1, D = x_in.size(1), E = col.size(0), N_src = x_in.size(0);
  // The transpose is walked (and checked) only for the x gradient.
  check_csr_values(op, need_x ? CsrArgs{rowptr, col, N_src, "N_src, the rows of 'x'", t_rowptr,
                                        t_col, t_perm}
                              : CsrArgs{rowptr, col, N_src, "N_src, the rows of 'x'"});

  const at::Tensor x = x_in.contiguous(), g = grad_in.contiguous();
  const at::Tensor v = value.has_value() ? value->contiguous() : at::Tensor();
  const at::Tensor a = r == Reduce::kMax ? arg.contiguous() : at::Tensor();
  at::Tensor grad_x = need_x ? at::empty({N_src, D}, x.options()) : at::empty({0}, x.options());
  at::Tensor grad_v = need_value ? at::empty(v.sizes(), x.options()) : at::empty({0}, x.options());
  if (!need_x && !need_value) return {grad_x, grad_v};
  if (D == 0 || E == 0) {
    grad_x.zero_();
    grad_v.zero_();
    return {grad_x, grad_v};
  }
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "gkd_spmm_backward_cpu", [&] {
    const scalar_t* vp = v.defined() ? v.data_ptr<scalar_t>() : nullptr;
    const int64_t* ap = a.defined() ? a.data_ptr<int64_t>() : nullptr;
    scalar_t* gvp = need_value ? grad_v.data_ptr<scalar_t>() : nullptr;
    if (need_x) {
      spmm_backward_transposed<scalar_t>(
          t_rowptr->data_ptr<int64_t>(), t_col->data_ptr<int64_t>(), t_perm->data_ptr<int64_t>(),
          rowptr.data_ptr<int64_t>(), vp, x.data_ptr<scalar_t>(), g.data_ptr<scalar_t>(), ap,
          grad_x.data_ptr<scalar_t>(), gvp, N_src, D, H, r);
    } else {
      sddmm_kernel<scalar_t>(rowptr.data_ptr<int64_t>(), col.data_ptr<int64_t>(),
                             g.data_ptr<scalar_t>(), x.data_ptr<scalar_t>(), ap, gvp, rows, D, H,
                             r == Reduce::kMean);
    }
  });
  return {grad_x, grad_v};
}

at::Tensor sddmm_cpu(const at::Tensor& rowptr, const at::Tensor& col, const at::Tensor& a_in,
                     const at::Tensor& b_in, int64_t heads, const c10::optional<at::Tensor>& t_rowptr,
                     const c10::optional<at::Tensor>& t_col, const c10::optional<at::Tensor>& t_perm) {
  const char* op = "gkd::sddmm";
  // The forward does not walk the transpose, but its gradient for 'b' will: checked here.
  check_csr_values(op, sddmm_csr_args(op, rowptr, col, a_in, b_in, heads, t_rowptr, t_col, t_perm));
  const at::Tensor a = a_in.contiguous(), b = b_in.contiguous();
  const int64_t rows = rowptr.size(0) - 1, D = a.size(1), E = col.size(0);
  at::Tensor out = at::empty({E, heads}, a.options());
  if (E == 0) return out;
  if (D == 0) return out.zero_();
  AT_DISPATCH_FLOATING_TYPES(a.scalar_type(), "gkd_sddmm_cpu", [&] {
    sddmm_kernel<scalar_t>(rowptr.data_ptr<int64_t>(), col.data_ptr<int64_t>(),
                           a.data_ptr<scalar_t>(), b.data_ptr<scalar_t>(), nullptr,
                           out.data_ptr<scalar_t>(), rows, D, heads, false);
  });
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(gkd, CPU, m) {
  m.impl("spmm", &spmm_cpu);
  m.impl("spmm_backward", &spmm_backward_cpu);
  m.impl("sddmm", &sddmm_cpu);
}

}  // namespace cpu
}  // namespace gkd
