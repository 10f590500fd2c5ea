// CUDA kernels of gkd::spmm, gkd::spmm_backward and gkd::sddmm.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <limits>

#include "../checks.h"
#include "common.cuh"
#include "csr_values.cuh"

namespace gkd {
namespace cuda {
namespace {

// Row-wise SpMM. Parallel mapping: a group of G lanes (G <= 32, sized to the feature width)
// owns one output row and one chunk of G*VEC features (grid.y walks the chunks when D is
// wider). The group loads G edge indices/values at once (coalesced) and broadcasts them lane to
// lane by shuffle; each lane then gathers VEC contiguous features of the neighbour row with one
// vector load, so a warp reads whole rows of x. Accumulation in opmath (fp32 for half/bf16).
// With H heads (value [E, H]) the VEC features of a lane lie in one head, since VEC divides D/H.
template <typename scalar_t, int VEC, Reduce REDUCE>
__global__ void spmm_kernel(const int64_t* __restrict__ rowptr, const int64_t* __restrict__ col,
                            const scalar_t* __restrict__ value, const scalar_t* __restrict__ x,
                            scalar_t* __restrict__ out, int64_t* __restrict__ arg, int64_t rows,
                            int64_t D, int64_t H, int64_t E, int G) {
  using acc_t = at::opmath_type<scalar_t>;
  const int lane = threadIdx.x % G;
  const int64_t row = int64_t(blockIdx.x) * (kThreads / G) + threadIdx.x / G;
  const int64_t f0 = int64_t(blockIdx.y) * G * VEC + int64_t(lane) * VEC;
  const unsigned mask = group_mask(G);
  const bool active = f0 < D;
  const int64_t F = D / H;
  const int64_t head = active ? f0 / F : 0;
  const int64_t e0 = row < rows ? rowptr[row] : 0, e1 = row < rows ? rowptr[row + 1] : 0;

  acc_t acc[VEC];
  int64_t best[VEC];
  for (int k = 0; k < VEC; ++k) {
    acc[k] = REDUCE == Reduce::kMax ? -std::numeric_limits<acc_t>::infinity() : acc_t(0);
    best[k] = E;
  }
  for (int64_t base = e0; base < e1; base += G) {
    const int64_t my_e = base + lane;
    const int64_t my_col = my_e < e1 ? col[my_e] : 0;
    const acc_t my_val = (value != nullptr && H == 1 && my_e < e1) ? acc_t(value[my_e]) : acc_t(1);
    const int n = (e1 - base) < G ? int(e1 - base) : G;
    for (int k = 0; k < n; ++k) {
      const int64_t j = __shfl_sync(mask, my_col, k, G);
      acc_t v = __shfl_sync(mask, my_val, k, G);
      if (value != nullptr && H > 1) v = acc_t(value[(base + k) * H + head]);
      if (!active) continue;
      const Vec<scalar_t, VEC> xv = load_vec<scalar_t, VEC>(x + j * D + f0);
      for (int q = 0; q < VEC; ++q) {
        const acc_t m = v * acc_t(xv.v[q]);
        if (REDUCE == Reduce::kMax) {
          // A NaN wins and stays (the first NaN edge), as torch's amax propagates NaN.
          if (m > acc[q] || (m != m && acc[q] == acc[q]) || best[q] == E) {
            acc[q] = m;
            best[q] = base + k;
          }
        } else {
          acc[q] += m;
        }
      }
    }
  }
  if (row >= rows || !active) return;
  Vec<scalar_t, VEC> o;
  const acc_t scale = (REDUCE == Reduce::kMean && e1 > e0) ? acc_t(1) / acc_t(e1 - e0) : acc_t(1);
  for (int q = 0; q < VEC; ++q) {
    acc_t r = acc[q] * scale;
    if (REDUCE == Reduce::kMax && e1 == e0) r = acc_t(0);
    o.v[q] = scalar_t(r);
  }
  store_vec<scalar_t, VEC>(out + row * D + f0, o);
  if (REDUCE == Reduce::kMax)
    for (int q = 0; q < VEC; ++q) arg[row * D + f0 + q] = best[q];
}

// Per-edge, per-head dot products <a[i], b[j]> (sddmm, and the value gradient of spmm).
// Parallel mapping: a group of G lanes owns one destination row i; for each of its edges the
// lanes take strided VEC-wide slices of the head's features and reduce the partial sums by
// shuffle. With inv_deg the result is scaled by 1/deg(i) (mean); with arg only the features
// whose max was won by the edge count (max).
template <typename scalar_t, int VEC>
__global__ void sddmm_kernel(const int64_t* __restrict__ rowptr, const int64_t* __restrict__ col,
                             const scalar_t* __restrict__ a, const scalar_t* __restrict__ b,
                             const int64_t* __restrict__ arg, scalar_t* __restrict__ out,
                             int64_t rows, int64_t D, int64_t H, bool inv_deg, int G) {
  using acc_t = at::opmath_type<scalar_t>;
  const int lane = threadIdx.x % G;
  const int64_t row = int64_t(blockIdx.x) * (kThreads / G) + threadIdx.x / G;
  if (row >= rows) return;  // the whole group leaves together: no shuffle is left waiting
  const unsigned mask = group_mask(G);
  const int64_t F = D / H;
  const int64_t e0 = rowptr[row], e1 = rowptr[row + 1];
  const acc_t scale = (inv_deg && e1 > e0) ? acc_t(1) / acc_t(e1 - e0) : acc_t(1);
  const scalar_t* ai = a + row * D;
  for (int64_t e = e0; e < e1; ++e) {
    const scalar_t* bj = b + col[e] * D;
    for (int64_t h = 0; h < H; ++h) {
      acc_t s = 0;
      for (int64_t f = h * F + int64_t(lane) * VEC; f < (h + 1) * F; f += int64_t(G) * VEC) {
        const Vec<scalar_t, VEC> av = load_vec<scalar_t, VEC>(ai + f);
        const Vec<scalar_t, VEC> bv = load_vec<scalar_t, VEC>(bj + f);
        for (int q = 0; q < VEC; ++q) {
          if (arg == nullptr || arg[row * D + f + q] == e) s += acc_t(av.v[q]) * acc_t(bv.v[q]);
        }
      }
      s = group_sum(s, mask, G);
      if (lane == 0) out[e * H + h] = scalar_t(s * scale);
    }
  }
}

// Gradient for x of a max-reduced spmm: grad_x[j, f] sums grad_out[i, f]·value over the outgoing
// edges e = (j -> i) that won the max of (i, f). One thread per (j, f), walking the transposed
// CSR, so each output element has a single writer (no atomics).
template <typename scalar_t>
__global__ void spmm_max_backward_x_kernel(const int64_t* __restrict__ t_rowptr,
                                           const int64_t* __restrict__ t_col,
                                           const int64_t* __restrict__ t_perm,
                                           const scalar_t* __restrict__ value,
                                           const scalar_t* __restrict__ g,
                                           const int64_t* __restrict__ arg,
                                           scalar_t* __restrict__ gx, int64_t src_rows, int64_t D,
                                           int64_t H) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t idx = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (idx >= src_rows * D) return;
  const int64_t j = idx / D, f = idx % D, h = f / (D / H);
  acc_t s = 0;
  for (int64_t k = t_rowptr[j]; k < t_rowptr[j + 1]; ++k) {
    const int64_t i = t_col[k], e = t_perm[k];
    if (arg[i * D + f] == e) s += (value ? acc_t(value[e * H + h]) : acc_t(1)) * acc_t(g[i * D + f]);
  }
  gx[idx] = scalar_t(s);
}

struct Launch {
  int G, vec;
  dim3 grid;
};

template <typename scalar_t>
Launch plan_rows(int64_t rows, int64_t D, int64_t H, const void* p1, const void* p2) {
  int vec = vec_width(D / H, sizeof(scalar_t), p1);
  vec = std::min(vec, vec_width(D / H, sizeof(scalar_t), p2));
  const int G = lanes_for((D + vec - 1) / vec);
  const int64_t chunks = (D + int64_t(G) * vec - 1) / (int64_t(G) * vec);
  TORCH_CHECK(chunks <= 65535, "gkd::spmm: feature width ", D, " is too large for the CUDA kernel");
  const int64_t blocks = (rows + kThreads / G - 1) / (kThreads / G);
  TORCH_CHECK(blocks <= std::numeric_limits<int32_t>::max(), "gkd::spmm: too many rows: ", rows);
  return {G, vec, dim3(unsigned(std::max<int64_t>(blocks, 1)), unsigned(std::max<int64_t>(chunks, 1)))};
}

#define GKD_DISPATCH_VEC(vec, ...)                \
  switch (vec) {                                  \
    case 8: { constexpr int VEC = 8; __VA_ARGS__(); break; } \
    case 4: { constexpr int VEC = 4; __VA_ARGS__(); break; } \
    case 2: { constexpr int VEC = 2; __VA_ARGS__(); break; } \
    default: { constexpr int VEC = 1; __VA_ARGS__(); break; } \
  }

void launch_spmm(const at::Tensor& rowptr, const at::Tensor& col, const at::Tensor& value,
                 const at::Tensor& x, at::Tensor& out, at::Tensor& arg, Reduce reduce, int64_t H) {
  const int64_t rows = rowptr.size(0) - 1, D = x.size(1), E = col.size(0);
  if (rows == 0 || D == 0) return;
  auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "gkd_spmm_cuda", [&] {
    const Launch L = plan_rows<scalar_t>(rows, D, H, x.data_ptr(), out.data_ptr());
    const scalar_t* vp = value.defined() ? value.data_ptr<scalar_t>() : nullptr;
    int64_t* ap = reduce == Reduce::kMax ? arg.data_ptr<int64_t>() : nullptr;
    GKD_DISPATCH_VEC(L.vec, [&] {
      auto args = std::make_tuple(rowptr.data_ptr<int64_t>(), col.data_ptr<int64_t>(), vp,
                                  x.data_ptr<scalar_t>(), out.data_ptr<scalar_t>(), ap, rows, D, H, E,
                                  L.G);
      if (reduce == Reduce::kMax) {
        std::apply([&](auto... a) { spmm_kernel<scalar_t, VEC, Reduce::kMax><<<L.grid, kThreads, 0, stream>>>(a...); }, args);
      } else if (reduce == Reduce::kMean) {
        std::apply([&](auto... a) { spmm_kernel<scalar_t, VEC, Reduce::kMean><<<L.grid, kThreads, 0, stream>>>(a...); }, args);
      } else {
        std::apply([&](auto... a) { spmm_kernel<scalar_t, VEC, Reduce::kSum><<<L.grid, kThreads, 0, stream>>>(a...); }, args);
      }
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  });
}

void launch_sddmm(const at::Tensor& rowptr, const at::Tensor& col, const at::Tensor& a,
                  const at::Tensor& b, const at::Tensor& arg, at::Tensor& out, int64_t H,
                  bool inv_deg) {
  const int64_t rows = rowptr.size(0) - 1, D = a.size(1);
  if (rows == 0 || col.size(0) == 0) return;
  auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, a.scalar_type(), "gkd_sddmm_cuda", [&] {
    int vec = std::min(vec_width(D / H, sizeof(scalar_t), a.data_ptr()),
                       vec_width(D / H, sizeof(scalar_t), b.data_ptr()));
    const int G = lanes_for(std::max<int64_t>((D / H + vec - 1) / vec, 1));
    const int64_t blocks = std::max<int64_t>((rows + kThreads / G - 1) / (kThreads / G), 1);
    const int64_t* ap = arg.defined() && arg.numel() ? arg.data_ptr<int64_t>() : nullptr;
    GKD_DISPATCH_VEC(vec, [&] {
      sddmm_kernel<scalar_t, VEC><<<unsigned(blocks), kThreads, 0, stream>>>(
          rowptr.data_ptr<int64_t>(), col.data_ptr<int64_t>(), a.data_ptr<scalar_t>(),
          b.data_ptr<scalar_t>(), ap, out.data_ptr<scalar_t>(), rows, D, H, inv_deg, G);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  });
}

std::tuple<at::Tensor, at::Tensor> spmm_cuda(const at::Tensor& rowptr, const at::Tensor& col,
                                             const c10::optional<at::Tensor>& value,
                                             const at::Tensor& x_in, c10::string_view reduce,
                                             const c10::optional<at::Tensor>&,
                                             const c10::optional<at::Tensor>&,
                                             const c10::optional<at::Tensor>&) {
  const char* op = "gkd::spmm";
  const int64_t H = check_spmm(op, rowptr, col, value, x_in);
  const Reduce r = parse_reduce(op, reduce);
  c10::cuda::CUDAGuard guard(x_in.device());
  check_csr_values_cuda(op, {rowptr, col, x_in.size(0), "N_src, the rows of 'x'"});
  const at::Tensor x = x_in.contiguous();
  const at::Tensor v = value.has_value() ? value->contiguous() : at::Tensor();
  const int64_t rows = rowptr.size(0) - 1, D = x.size(1);
  at::Tensor out = at::empty({rows, D}, x.options());
  at::Tensor arg = r == Reduce::kMax ? at::empty({rows, D}, x.options().dtype(at::kLong))
                             : at::empty({0}, x.options().dtype(at::kLong));
  launch_spmm(rowptr, col, v, x, out, arg, r, H);
  return {out, arg};
}

std::tuple<at::Tensor, at::Tensor> spmm_backward_cuda(
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
  c10::cuda::CUDAGuard guard(x_in.device());
  // The transpose is walked (and checked) only for the x gradient.
  check_csr_values_cuda(op, need_x ? CsrArgs{rowptr, col, N_src, "N_src, the rows of 'x'", t_rowptr,
                                             t_col, t_perm}
                                   : CsrArgs{rowptr, col, N_src, "N_src, the rows of 'x'"});
  const at::Tensor x = x_in.contiguous(), g = grad_in.contiguous();
  const at::Tensor v = value.has_value() ? value->contiguous() : at::Tensor();
  const at::Tensor a = r == Reduce::kMax ? arg.contiguous() : at::Tensor();
  at::Tensor grad_x = need_x ? at::empty({N_src, D}, x.options()) : at::empty({0}, x.options());
  at::Tensor grad_v = need_value ? at::empty(v.sizes(), x.options()) : at::empty({0}, x.options());
  if (E == 0 || D == 0) {
    grad_x.zero_();
    grad_v.zero_();
    return {grad_x, grad_v};
  }
  auto stream = c10::cuda::getCurrentCUDAStream();
  if (need_x) {
    if (r == Reduce::kMax) {
      AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "gkd_spmm_max_bwd_cuda", [&] {
        const int64_t total = N_src * D;
        const int64_t blocks = std::max<int64_t>((total + kThreads - 1) / kThreads, 1);
        spmm_max_backward_x_kernel<scalar_t><<<unsigned(blocks), kThreads, 0, stream>>>(
            t_rowptr->data_ptr<int64_t>(), t_col->data_ptr<int64_t>(), t_perm->data_ptr<int64_t>(),
            v.defined() ? v.data_ptr<scalar_t>() : nullptr, g.data_ptr<scalar_t>(),
            a.data_ptr<int64_t>(), grad_x.data_ptr<scalar_t>(), N_src, D, H);
        C10_CUDA_KERNEL_LAUNCH_CHECK();
      });
    } else {
      // grad_x = A^T (scaled) @ grad_out: the forward kernel over the transposed CSR, with the
      // edge weights permuted into transposed order (O(E·H) scalars, not O(E·D)).
      at::Tensor w;
      if (v.defined()) w = v.index_select(0, *t_perm);
      if (r == Reduce::kMean) {
        // 1/deg and its product with the value in opmath (fp32 for half/bf16), rounded to the
        // input dtype once: a half degree >= 65520 is inf (1/deg = 0) and a bf16 degree > 256
        // is already rounded before the division.
        const auto acc = stat_dtype(x);
        const at::Tensor deg = (rowptr.narrow(0, 1, rows) - rowptr.narrow(0, 0, rows)).clamp_min(1);
        at::Tensor inv = deg.index_select(0, *t_col).to(acc).reciprocal();
        if (w.defined()) w = (w.to(acc) * (w.dim() == 2 ? inv.unsqueeze(1) : inv)).to(x.scalar_type());
        else w = inv.to(x.scalar_type());
      }
      at::Tensor none_arg;
      launch_spmm(*t_rowptr, *t_col, w.defined() ? w.contiguous() : w, g, grad_x, none_arg,
                  Reduce::kSum, w.defined() && w.dim() == 2 ? w.size(1) : 1);
    }
  }
  if (need_value) launch_sddmm(rowptr, col, g, x, a, grad_v, H, r == Reduce::kMean);
  return {grad_x, grad_v};
}

at::Tensor sddmm_cuda(const at::Tensor& rowptr, const at::Tensor& col, const at::Tensor& a_in,
                      const at::Tensor& b_in, int64_t heads,
                      const c10::optional<at::Tensor>& t_rowptr,
                      const c10::optional<at::Tensor>& t_col,
                      const c10::optional<at::Tensor>& t_perm) {
  const char* op = "gkd::sddmm";
  const CsrArgs args = sddmm_csr_args(op, rowptr, col, a_in, b_in, heads, t_rowptr, t_col, t_perm);
  c10::cuda::CUDAGuard guard(a_in.device());
  // The forward does not walk the transpose, but its gradient for 'b' will: checked here.
  check_csr_values_cuda(op, args);
  const at::Tensor a = a_in.contiguous(), b = b_in.contiguous();
  at::Tensor out = at::empty({col.size(0), heads}, a.options());
  if (a.size(1) == 0) return out.zero_();
  launch_sddmm(rowptr, col, a, b, at::Tensor(), out, heads, false);
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(gkd, CUDA, m) {
  m.impl("spmm", &spmm_cuda);
  m.impl("spmm_backward", &spmm_backward_cuda);
  m.impl("sddmm", &sddmm_cuda);
}

}  // namespace cuda
}  // namespace gkd
