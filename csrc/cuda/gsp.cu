// CUDA kernels of gkd::gsp and gkd::gsp_backward (tiled global structure preserving loss).
// float16/bfloat16 inputs are computed in float32; tile products are exact FMAs (no tensor
// cores here). No atomics: every output element and partial sum has exactly one writer.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include "../checks.h"
#include "../similarity.h"
#include "tiles.cuh"

namespace gkd {
namespace cuda {
namespace {

// Gram entry -> what the loss reads: the kernel value (cosine, l2, rbf) or the cosine (poly,
// squared where used, as its gradient needs the cosine). Squared distances come from
// |a|² + |b|² - 2a.b, clamped at 0 against rounding, and exactly 0 on the diagonal.
template <typename T>
__device__ __forceinline__ T kernel_value(T g, T sqa, T sqb, bool diag, int kernel, T gamma) {
  if (kernel == kCosine || kernel == kPoly) return g;
  const T d2 = diag ? T(0) : max(sqa + sqb - T(2) * g, T(0));
  return kernel == kL2 ? dsqrt(d2) : dexp(-gamma * d2);
}

template <typename T>
__device__ __forceinline__ T kval(T v, int kernel) { return kernel == kPoly ? v * v : v; }

// Forward: one block per BM-row tile rt, visiting only candidate tiles ct >= rt (K is
// symmetric: off-diagonal tiles count twice). Each thread sums its entries' squared kernel
// differences in double; the block reduces them into partial[rt], summed afterwards on the
// host side by ATen in a fixed order.
template <typename T>
__global__ void __launch_bounds__(kThreads)
    gsp_forward_kernel(const T* __restrict__ xs, const T* __restrict__ xt,
                       const T* __restrict__ sqs, const T* __restrict__ sqt, int64_t n,
                       int64_t Ds, int64_t Dt, int kernel, T gamma, double* __restrict__ partial) {
  constexpr int BM = TileCfg<T>::BM, TM = BM / 16;
  __shared__ __align__(32) T Ks[BM][BM + 4];
  __shared__ __align__(32) T Kt[BM][BM + 4];
  __shared__ double red[kThreads / 32];
  const int ty = threadIdx.x / 16, tx = threadIdx.x % 16;
  const int64_t r0 = int64_t(blockIdx.x) * BM;
  double local = 0;
  for (int64_t c0 = r0; c0 < n; c0 += BM) {
    gram_tile<T, 0>(xs, xs, n, Ds, r0, c0, Ks);
    gram_tile<T, 0>(xt, xt, n, Dt, r0, c0, Kt);
    const double w = c0 == r0 ? 1.0 : 2.0;
#pragma unroll
    for (int i = 0; i < TM; ++i) {
      const int64_t row = r0 + ty + 16 * i;
#pragma unroll
      for (int j = 0; j < TM; ++j) {
        const int64_t col = c0 + tx + 16 * j;
        if (row < n && col < n) {
          const bool diag = row == col;
          const T a = kernel_value(Ks[ty + 16 * i][tx + 16 * j], sqs[row], sqs[col], diag, kernel, gamma);
          const T b = kernel_value(Kt[ty + 16 * i][tx + 16 * j], sqt[row], sqt[col], diag, kernel, gamma);
          const double d = double(kval(a, kernel)) - double(kval(b, kernel));
          local += w * d * d;
        }
      }
    }
    __syncthreads();
  }
  for (int off = 16; off > 0; off /= 2) local += __shfl_xor_sync(0xffffffffu, local, off);
  if (threadIdx.x % 32 == 0) red[threadIdx.x / 32] = local;
  __syncthreads();
  if (threadIdx.x == 0) {
    double total = 0;
    for (int w = 0; w < kThreads / 32; ++w) total += red[w];
    partial[blockIdx.x] = total;
  }
}

// Backward for one model (which = 0: student, 1: teacher): M = W'·X_which and rowsum(W'),
// W' = dL/dGram (cosine/poly) or dL/dd² (l2/rbf) without the factor 2·grad/n².
// Mapping as grad_rows_kernel in contrastive.cu: block (x, y) owns BM rows and a slab of
// NCH·BM features of M in registers and walks all candidate tiles; per tile both Gram tiles are
// recomputed, W' replaces the student tile in shared memory, and the teacher tile's buffer is
// reused to stage the feature chunks. Slab 0 also writes the row sums.
template <typename T>
__global__ void __launch_bounds__(kThreads)
    gsp_backward_kernel(const T* __restrict__ xs, const T* __restrict__ xt,
                        const T* __restrict__ sqs, const T* __restrict__ sqt, int64_t n,
                        int64_t Ds, int64_t Dt, int kernel, T gamma, int which,
                        T* __restrict__ M, T* __restrict__ rowsum) {
  constexpr int BM = TileCfg<T>::BM, TM = BM / 16, NCH = TileCfg<T>::NCH;
  __shared__ __align__(32) T Ks[BM][BM + 4];
  __shared__ __align__(32) T Kt[BM][BM + 4];
  const int ty = threadIdx.x / 16, tx = threadIdx.x % 16;
  const int64_t r0 = int64_t(blockIdx.x) * BM;
  const int64_t f0 = int64_t(blockIdx.y) * NCH * BM;
  const T* X = which == 0 ? xs : xt;
  const int64_t Dv = which == 0 ? Ds : Dt;
  T acc[TM][NCH * TM];
  T rs[TM];
#pragma unroll
  for (int i = 0; i < TM; ++i) {
    rs[i] = T(0);
#pragma unroll
    for (int j = 0; j < NCH * TM; ++j) acc[i][j] = T(0);
  }
  for (int64_t c0 = 0; c0 < n; c0 += BM) {
    gram_tile<T, 0>(xs, xs, n, Ds, r0, c0, Ks);
    gram_tile<T, 0>(xt, xt, n, Dt, r0, c0, Kt);
    // dL/dK_s = w, dL/dK_t = -w with w = K_s - K_t; then per kernel
    //   cosine: ±w;  poly: ±2w·cos;  l2: ±w/(2K), 0 at K = 0 (safe sqrt);  rbf: ∓gamma·w·K.
#pragma unroll
    for (int i = 0; i < TM; ++i) {
      const int64_t row = r0 + ty + 16 * i;
#pragma unroll
      for (int j = 0; j < TM; ++j) {
        const int64_t col = c0 + tx + 16 * j;
        T wp = T(0);
        if (row < n && col < n) {
          const bool diag = row == col;
          const T a = kernel_value(Ks[ty + 16 * i][tx + 16 * j], sqs[row], sqs[col], diag, kernel, gamma);
          const T b = kernel_value(Kt[ty + 16 * i][tx + 16 * j], sqt[row], sqt[col], diag, kernel, gamma);
          const T w = kval(a, kernel) - kval(b, kernel);
          const T k = which == 0 ? a : b;
          const T sgn = which == 0 ? T(1) : T(-1);
          if (kernel == kCosine) wp = sgn * w;
          else if (kernel == kPoly) wp = sgn * T(2) * w * k;
          else if (kernel == kL2) wp = k > T(0) ? sgn * w / (T(2) * k) : T(0);
          else wp = -sgn * gamma * w * k;
        }
        rs[i] += wp;
        Ks[ty + 16 * i][tx + 16 * j] = wp;  // own entry: read above by this thread only
      }
    }
    __syncthreads();
#pragma unroll
    for (int ch = 0; ch < NCH; ++ch) {
      const int64_t fc = f0 + int64_t(ch) * BM;
      if (fc < Dv) {  // uniform over the block
        for (int idx = threadIdx.x; idx < BM * BM; idx += kThreads) {
          const int k = idx / BM, f = idx % BM;
          const int64_t gj = c0 + k, gf = fc + f;
          Kt[k][f] = (gj < n && gf < Dv) ? X[gj * Dv + gf] : T(0);
        }
        __syncthreads();
#pragma unroll 4
        for (int k = 0; k < BM; ++k) {
          T gv[TM], vv[TM];
#pragma unroll
          for (int i = 0; i < TM; ++i) gv[i] = Ks[ty + 16 * i][k];
#pragma unroll
          for (int j = 0; j < TM; ++j) vv[j] = Kt[k][tx + 16 * j];
#pragma unroll
          for (int i = 0; i < TM; ++i)
#pragma unroll
            for (int j = 0; j < TM; ++j) acc[i][ch * TM + j] = fma(gv[i], vv[j], acc[i][ch * TM + j]);
        }
        __syncthreads();
      }
    }
  }
#pragma unroll
  for (int i = 0; i < TM; ++i) {
    const int64_t row = r0 + ty + 16 * i;
    const T total = row16_sum(rs[i]);
    if (row >= n) continue;
    if (rowsum != nullptr && blockIdx.y == 0 && tx == 0) rowsum[row] = total;
#pragma unroll
    for (int ch = 0; ch < NCH; ++ch)
#pragma unroll
      for (int j = 0; j < TM; ++j) {
        const int64_t f = f0 + int64_t(ch) * BM + tx + 16 * j;
        if (f < Dv) M[row * Dv + f] = acc[i][ch * TM + j];
      }
  }
}

void check_gsp(const char* op, const at::Tensor& h_s, const at::Tensor& h_t, double gamma) {
  check_embedding_pair(op, h_s, "h_s", h_t, "h_t", false);
  check_positive(op, "gamma", gamma);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> gsp_cuda(const at::Tensor& h_s, const at::Tensor& h_t,
                                                        c10::string_view kernel_name, double gamma) {
  const char* op = "gkd::gsp";
  check_gsp(op, h_s, h_t, gamma);
  const int kernel = gsp_kernel_code(op, kernel_name);
  const c10::cuda::CUDAGuard guard(h_s.device());
  const int64_t n = h_s.size(0);
  const at::Tensor sq_s = row_sq(h_s).contiguous(), sq_t = row_sq(h_t).contiguous();
  const at::Tensor xs = gsp_rows(h_s, sq_s, kernel), xt = gsp_rows(h_t, sq_t, kernel);
  at::Tensor loss;
  AT_DISPATCH_FLOATING_TYPES(xs.scalar_type(), "gkd_gsp_cuda", [&] {
    constexpr int BM = TileCfg<scalar_t>::BM;
    const int64_t nb = (n + BM - 1) / BM;
    at::Tensor partial = at::empty({nb}, xs.options().dtype(at::kDouble));
    gsp_forward_kernel<scalar_t><<<nb, kThreads, 0, c10::cuda::getCurrentCUDAStream()>>>(
        xs.data_ptr<scalar_t>(), xt.data_ptr<scalar_t>(), sq_s.data_ptr<scalar_t>(),
        sq_t.data_ptr<scalar_t>(), n, xs.size(1), xt.size(1), kernel, scalar_t(gamma),
        partial.data_ptr<double>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    loss = (partial.sum() / (double(n) * double(n))).to(h_s.scalar_type());
  });
  return {loss, sq_s, sq_t};
}

std::tuple<at::Tensor, at::Tensor> gsp_backward_cuda(const at::Tensor& grad, const at::Tensor& h_s,
                                                     const at::Tensor& h_t, const at::Tensor& sq_s,
                                                     const at::Tensor& sq_t,
                                                     c10::string_view kernel_name, double gamma,
                                                     bool need_s, bool need_t) {
  const char* op = "gkd::gsp_backward";
  check_gsp(op, h_s, h_t, gamma);
  const int kernel = gsp_kernel_code(op, kernel_name);
  const int64_t n = h_s.size(0);
  check_scalar_grad(op, grad, h_s);
  check_row_stat(op, "sq_s", sq_s, n, h_s, stat_dtype(h_s));
  check_row_stat(op, "sq_t", sq_t, n, h_s, stat_dtype(h_s));
  if (!need_s && !need_t) return {at::empty({0}, h_s.options()), at::empty({0}, h_s.options())};
  const c10::cuda::CUDAGuard guard(h_s.device());
  const at::Tensor ss = sq_s.contiguous(), st = sq_t.contiguous();
  const at::Tensor xs = gsp_rows(h_s, ss, kernel), xt = gsp_rows(h_t, st, kernel);
  const bool dist = kernel == kL2 || kernel == kRbf;
  const at::Tensor scale = grad.reshape({}) * (2.0 / (double(n) * double(n)));
  at::Tensor gs = at::empty({0}, h_s.options()), gt = at::empty({0}, h_s.options());
  AT_DISPATCH_FLOATING_TYPES(xs.scalar_type(), "gkd_gsp_backward_cuda", [&] {
    constexpr int BM = TileCfg<scalar_t>::BM, SLAB = BM * TileCfg<scalar_t>::NCH;
    for (int which = 0; which < 2; ++which) {
      if (!(which == 0 ? need_s : need_t)) continue;
      const at::Tensor& x = which == 0 ? xs : xt;
      const int64_t Dv = x.size(1);
      at::Tensor M = at::empty_like(x);
      at::Tensor r = dist ? at::empty({n}, x.options()) : at::Tensor();
      const dim3 grid((n + BM - 1) / BM, std::max<int64_t>(1, (Dv + SLAB - 1) / SLAB));
      gsp_backward_kernel<scalar_t><<<grid, kThreads, 0, c10::cuda::getCurrentCUDAStream()>>>(
          xs.data_ptr<scalar_t>(), xt.data_ptr<scalar_t>(), ss.data_ptr<scalar_t>(),
          st.data_ptr<scalar_t>(), n, xs.size(1), xt.size(1), kernel, scalar_t(gamma), which,
          M.data_ptr<scalar_t>(), dist ? r.data_ptr<scalar_t>() : nullptr);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
      if (which == 0) gs = gsp_finish(h_s, xs, ss, M, r, kernel, scale);
      else gt = gsp_finish(h_t, xt, st, M, r, kernel, scale);
    }
  });
  return {gs, gt};
}

}  // namespace

TORCH_LIBRARY_IMPL(gkd, CUDA, m) {
  m.impl("gsp", &gsp_cuda);
  m.impl("gsp_backward", &gsp_backward_cuda);
}

}  // namespace cuda
}  // namespace gkd
