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

// What the tiles of both models are made from: the rows of gsp_rows (xs [n, Ds], xt [n, Dt])
// and their squared norms, with the kernel.
template <typename T>
struct Models {
  static constexpr int BM = TileCfg<T>::BM;
  const T* xs;
  const T* xt;
  const T* sqs;
  const T* sqt;
  int64_t n, Ds, Dt;
  GspKernel kernel;
  T gamma;

  // Both Gram tiles of rows [r0, r0 + BM) x columns [c0, c0 + BM), into shared memory.
  __device__ __forceinline__ void gram_tiles(int64_t r0, int64_t c0, T (*Ks)[BM + 4],
                                             T (*Kt)[BM + 4]) const {
    gram_tile<T, Precision::kIeee>(xs, xs, n, n, Ds, r0, c0, Ks);
    gram_tile<T, Precision::kIeee>(xt, xt, n, n, Dt, r0, c0, Kt);
  }

  // Gram entry -> what the loss reads: the kernel value (cosine, l2, rbf) or the cosine (poly,
  // squared where used, as its gradient needs the cosine). Squared distances come from
  // |a|² + |b|² - 2a.b of the centred rows, raised to 0 where rounding left them negative (a
  // NaN stays NaN, which max() would drop), and exactly 0 on the diagonal.
  __device__ __forceinline__ T value(T g, T sqa, T sqb, bool diag) const {
    if (gsp_normalized(kernel)) return g;
    const T v = sqa + sqb - T(2) * g;
    const T d2 = diag ? T(0) : (v < T(0) ? T(0) : v);
    return kernel == GspKernel::kL2 ? fsqrt(d2) : fexp(-gamma * d2);
  }

  // The student's and the teacher's value of tile entry (row, col), at (i, j) in the tiles.
  __device__ __forceinline__ void values(const T (*Ks)[BM + 4], const T (*Kt)[BM + 4], int i, int j,
                                         int64_t row, int64_t col, T& a, T& b) const {
    const bool diag = row == col;
    a = value(Ks[i][j], sqs[row], sqs[col], diag);
    b = value(Kt[i][j], sqt[row], sqt[col], diag);
  }

  __device__ __forceinline__ T kval(T v) const { return kernel == GspKernel::kPoly ? v * v : v; }
};

// Forward: one block per BM-row tile rt, visiting only candidate tiles ct >= rt (K is
// symmetric: off-diagonal tiles count twice). Each thread sums its entries' squared kernel
// differences in double; the block reduces them into partial[rt], summed afterwards on the
// host side by ATen in a fixed order.
template <typename T>
__global__ void __launch_bounds__(kThreads)
    gsp_forward_kernel(const Models<T> params, double* __restrict__ partial) {
  const Models<T> m = params;  // a local copy: the member calls below never address the parameter
  constexpr int BM = TileCfg<T>::BM, TM = BM / 16;
  __shared__ __align__(32) T Ks[BM][BM + 4];
  __shared__ __align__(32) T Kt[BM][BM + 4];
  __shared__ double red[kThreads / kWarp];
  const int ty = threadIdx.x / 16, tx = threadIdx.x % 16;
  const int64_t n = m.n, r0 = int64_t(blockIdx.x) * BM;
  double local = 0;
  for (int64_t c0 = r0; c0 < n; c0 += BM) {
    m.gram_tiles(r0, c0, Ks, Kt);
    const double w = c0 == r0 ? 1.0 : 2.0;
#pragma unroll
    for (int i = 0; i < TM; ++i) {
      const int64_t row = r0 + ty + 16 * i;
#pragma unroll
      for (int j = 0; j < TM; ++j) {
        const int64_t col = c0 + tx + 16 * j;
        if (row < n && col < n) {
          T a, b;
          m.values(Ks, Kt, ty + 16 * i, tx + 16 * j, row, col, a, b);
          const double d = double(m.kval(a)) - double(m.kval(b));
          local += w * d * d;
        }
      }
    }
    __syncthreads();
  }
  local = group_sum(local, kFullMask, kWarp);
  if (threadIdx.x % kWarp == 0) red[threadIdx.x / kWarp] = local;
  __syncthreads();
  if (threadIdx.x == 0) {
    double total = 0;
    for (int w = 0; w < kThreads / kWarp; ++w) total += red[w];
    partial[blockIdx.x] = total;
  }
}

// Backward for one model (which = 0: student, 1: teacher): M = W'·X_which and rowsum(W'),
// W' = dL/dGram (cosine/poly) or dL/dd² (l2/rbf) without the factor 2·grad/n².
// Mapping as grad_rows_kernel in contrastive.cu: block (x, y) owns BM rows and a slab of
// NCH·BM features of M (Slab, tiles.cuh) and walks all candidate tiles; per tile both Gram
// tiles are recomputed, W' replaces the student tile in shared memory, and the teacher tile's
// buffer is reused to stage the feature chunks. Slab 0 also writes the row sums.
template <typename T>
__global__ void __launch_bounds__(kThreads)
    gsp_backward_kernel(const Models<T> params, int which, T* __restrict__ M,
                        T* __restrict__ rowsum) {
  const Models<T> m = params;
  constexpr int BM = TileCfg<T>::BM, TM = BM / 16, NCH = TileCfg<T>::NCH;
  __shared__ __align__(32) T Ks[BM][BM + 4];
  __shared__ __align__(32) T Kt[BM][BM + 4];
  const int ty = threadIdx.x / 16, tx = threadIdx.x % 16;
  const int64_t n = m.n, r0 = int64_t(blockIdx.x) * BM;
  const int64_t f0 = int64_t(blockIdx.y) * NCH * BM;
  const T* X = which == 0 ? m.xs : m.xt;
  const int64_t Dv = which == 0 ? m.Ds : m.Dt;
  Slab<T> slab;
  T rs[TM];
#pragma unroll
  for (int i = 0; i < TM; ++i) rs[i] = T(0);
  for (int64_t c0 = 0; c0 < n; c0 += BM) {
    m.gram_tiles(r0, c0, Ks, Kt);
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
          T a, b;
          m.values(Ks, Kt, ty + 16 * i, tx + 16 * j, row, col, a, b);
          const T w = m.kval(a) - m.kval(b);
          const T k = which == 0 ? a : b;
          const T sgn = which == 0 ? T(1) : T(-1);
          switch (m.kernel) {
            case GspKernel::kCosine: wp = sgn * w; break;
            case GspKernel::kPoly: wp = sgn * T(2) * w * k; break;
            case GspKernel::kL2: wp = k > T(0) ? sgn * w / (T(2) * k) : T(0); break;
            case GspKernel::kRbf: wp = -sgn * m.gamma * w * k; break;
          }
        }
        rs[i] += wp;
        Ks[ty + 16 * i][tx + 16 * j] = wp;  // own entry: read above by this thread only
      }
    }
    __syncthreads();
    slab.add(Ks, Kt, X, n, Dv, c0, f0);
  }
  if (rowsum != nullptr && blockIdx.y == 0) {  // uniform over the block
#pragma unroll
    for (int i = 0; i < TM; ++i) {
      const int64_t row = r0 + ty + 16 * i;
      const T total = row16_sum(rs[i]);
      if (row < n && tx == 0) rowsum[row] = total;
    }
  }
  slab.store(M, n, Dv, r0, f0);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> gsp_cuda(const at::Tensor& h_s, const at::Tensor& h_t,
                                                        c10::string_view kernel_name, double gamma) {
  const char* op = "gkd::gsp";
  const GspKernel kernel = check_gsp(op, h_s, h_t, kernel_name, gamma);
  const c10::cuda::CUDAGuard guard(h_s.device());
  const int64_t n = h_s.size(0);
  const at::Tensor bs = gsp_base(h_s, kernel), bt = gsp_base(h_t, kernel);
  const at::Tensor sq_s = row_sq(bs).contiguous(), sq_t = row_sq(bt).contiguous();
  const at::Tensor xs = gsp_rows(bs, sq_s, kernel), xt = gsp_rows(bt, sq_t, kernel);
  at::Tensor loss;
  AT_DISPATCH_FLOATING_TYPES(xs.scalar_type(), "gkd_gsp_cuda", [&] {
    constexpr int BM = TileCfg<scalar_t>::BM;
    const int64_t nb = (n + BM - 1) / BM;
    at::Tensor partial = at::empty({nb}, xs.options().dtype(at::kDouble));
    const Models<scalar_t> m{xs.data_ptr<scalar_t>(), xt.data_ptr<scalar_t>(),
                             sq_s.data_ptr<scalar_t>(), sq_t.data_ptr<scalar_t>(), n, xs.size(1),
                             xt.size(1), kernel, scalar_t(gamma)};
    gsp_forward_kernel<scalar_t><<<nb, kThreads, 0, c10::cuda::getCurrentCUDAStream()>>>(
        m, partial.data_ptr<double>());
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
  const GspKernel kernel = check_gsp_backward(op, grad, h_s, h_t, sq_s, sq_t, kernel_name, gamma);
  const int64_t n = h_s.size(0);
  if (!need_s && !need_t) return {at::empty({0}, h_s.options()), at::empty({0}, h_s.options())};
  const c10::cuda::CUDAGuard guard(h_s.device());
  const at::Tensor ss = sq_s.contiguous(), st = sq_t.contiguous();
  const at::Tensor xs = gsp_rows(gsp_base(h_s, kernel), ss, kernel);
  const at::Tensor xt = gsp_rows(gsp_base(h_t, kernel), st, kernel);
  const bool dist = !gsp_normalized(kernel);
  const at::Tensor scale = grad.reshape({}) * (2.0 / (double(n) * double(n)));
  at::Tensor gs = at::empty({0}, h_s.options()), gt = at::empty({0}, h_s.options());
  AT_DISPATCH_FLOATING_TYPES(xs.scalar_type(), "gkd_gsp_backward_cuda", [&] {
    constexpr int BM = TileCfg<scalar_t>::BM, SLAB = BM * TileCfg<scalar_t>::NCH;
    const Models<scalar_t> m{xs.data_ptr<scalar_t>(), xt.data_ptr<scalar_t>(),
                             ss.data_ptr<scalar_t>(), st.data_ptr<scalar_t>(), n, xs.size(1),
                             xt.size(1), kernel, scalar_t(gamma)};
    for (int which = 0; which < 2; ++which) {
      if (!(which == 0 ? need_s : need_t)) continue;
      const at::Tensor& x = which == 0 ? xs : xt;
      const int64_t Dv = x.size(1);
      at::Tensor M = at::empty_like(x);
      at::Tensor r = dist ? at::empty({n}, x.options()) : at::Tensor();
      const dim3 grid((n + BM - 1) / BM, std::max<int64_t>(1, (Dv + SLAB - 1) / SLAB));
      gsp_backward_kernel<scalar_t><<<grid, kThreads, 0, c10::cuda::getCurrentCUDAStream()>>>(
          m, which, M.data_ptr<scalar_t>(), dist ? r.data_ptr<scalar_t>() : nullptr);
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
