// CUDA kernels of gkd::infonce and gkd::infonce_backward (tiled G-CRD InfoNCE).
//
// Inputs in float16/bfloat16 are computed in float32; 'tf32' and 'bf16' precisions compute the
// logit tiles on tensor cores (WMMA) with fp32 accumulation, everything else in fp32 (fp64 for
// double inputs). No atomics anywhere: every output element has exactly one writer.
// Shapes: anchors z_s [n, D], candidates z_t [m, D] with m >= n (m == n when symmetric); the
// kernels take the rows of their A (nA) and B (nB) separately, since the z_t gradient runs with
// the roles swapped (A = z_t: m rows, B = z_s: n columns).
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <limits>

#include "../checks.h"
#include "../similarity.h"
#include "tiles.cuh"

namespace gkd {
namespace cuda {
namespace {

// Row log-sum-exps of S = A·Bᵀ (A [nA, D] already scaled by 1/tau, B [nB, D]): lse [nA].
// Mapping: one block per BM anchor rows, walking all candidate tiles (the FlashAttention
// forward); thread (ty, tx) keeps the running (max, sum) of its TM rows, replicated over the 16
// lanes of its half warp, which combine their tile entries by shuffles.
// Online log-sum-exp: per tile, m' = max(m, tile max); s = s·exp(m - m') + Σ exp(x - m'), so
// every exponent is <= 0 and the result is max + log(sum) without overflow at any temperature.
template <typename T, Precision P>
__global__ void __launch_bounds__(kThreads)
    lse_rows_kernel(const T* __restrict__ A, const T* __restrict__ B, int64_t nA, int64_t nB,
                    int64_t D, T* __restrict__ lse) {
  constexpr int BM = TileCfg<T>::BM, TM = BM / 16;
  __shared__ __align__(32) T S[BM][BM + 4];
  const int ty = threadIdx.x / 16, tx = threadIdx.x % 16;
  const int64_t r0 = int64_t(blockIdx.x) * BM;
  const T neg_inf = -std::numeric_limits<T>::infinity();
  T m[TM], s[TM];
#pragma unroll
  for (int i = 0; i < TM; ++i) {
    m[i] = neg_inf;
    s[i] = T(0);
  }
  for (int64_t c0 = 0; c0 < nB; c0 += BM) {
    gram_tile<T, P>(A, B, nA, nB, D, r0, c0, S);
#pragma unroll
    for (int i = 0; i < TM; ++i) {
      T x[TM];
      T mx = neg_inf;
#pragma unroll
      for (int j = 0; j < TM; ++j) {
        const int64_t col = c0 + tx + 16 * j;
        x[j] = col < nB ? S[ty + 16 * i][tx + 16 * j] : neg_inf;
        mx = max(mx, x[j]);
      }
      // Column c0 < nB is valid, so the tile maximum is finite.
      const T mnew = max(m[i], row16_max(mx));
      T sum = T(0);
#pragma unroll
      for (int j = 0; j < TM; ++j) sum += fexp(x[j] - mnew);
      sum = row16_sum(sum);
      s[i] = s[i] * fexp(m[i] - mnew) + sum;
      m[i] = mnew;
    }
    __syncthreads();
  }
  if (tx == 0) {
#pragma unroll
    for (int i = 0; i < TM; ++i) {
      const int64_t row = r0 + ty + 16 * i;
      if (row < nA) lse[row] = m[i] + flog(s[i]);
    }
  }
}

// out[i, f] = Σ_j G'_ij B[j, f] with G'_ij = c·(exp(S_ij - lse_row[i]) + exp(S_ij - lse_col[j])),
// either term absent when its pointer is null; S = A·Bᵀ recomputed per tile. i < nA (out and
// lse_row [nA]), j < nB (lse_col [nB]).
// Mapping: block (x, y) owns BM rows and a slab of NCH·BM output features (Slab, tiles.cuh),
// kept in registers for the whole walk over candidate tiles and written once (deterministic,
// no atomics). Per candidate tile the G' tile replaces S in shared memory, then the slab's B rows
// are multiplied in. Wider features take more slabs (grid y), each recomputing S.
template <typename T, Precision P>
__global__ void __launch_bounds__(kThreads)
    grad_rows_kernel(const T* __restrict__ A, const T* __restrict__ B,
                     const T* __restrict__ lse_row, const T* __restrict__ lse_col, int64_t nA,
                     int64_t nB, int64_t D, T c, T* __restrict__ out) {
  constexpr int BM = TileCfg<T>::BM, TM = BM / 16, NCH = TileCfg<T>::NCH;
  __shared__ __align__(32) T S[BM][BM + 4];
  __shared__ __align__(32) T V[BM][BM + 4];
  const int ty = threadIdx.x / 16, tx = threadIdx.x % 16;
  const int64_t r0 = int64_t(blockIdx.x) * BM;
  const int64_t f0 = int64_t(blockIdx.y) * NCH * BM;
  T lr[TM];
#pragma unroll
  for (int i = 0; i < TM; ++i) {
    const int64_t row = r0 + ty + 16 * i;
    lr[i] = (lse_row != nullptr && row < nA) ? lse_row[row] : T(0);
  }
  Slab<T> slab;
  for (int64_t c0 = 0; c0 < nB; c0 += BM) {
    gram_tile<T, P>(A, B, nA, nB, D, r0, c0, S);
#pragma unroll
    for (int i = 0; i < TM; ++i) {
#pragma unroll
      for (int j = 0; j < TM; ++j) {
        const int64_t row = r0 + ty + 16 * i, col = c0 + tx + 16 * j;
        T g = T(0);
        if (row < nA && col < nB) {
          const T x = S[ty + 16 * i][tx + 16 * j];
          if (lse_row != nullptr) g += fexp(x - lr[i]);
          if (lse_col != nullptr) g += fexp(x - lse_col[col]);
          g *= c;
        }
        S[ty + 16 * i][tx + 16 * j] = g;
      }
    }
    __syncthreads();
    slab.add(S, V, B, nB, D, c0, f0);
  }
  slab.store(out, nA, D, r0, f0);
}

template <typename T>
void launch_lse(const at::Tensor& a, const at::Tensor& b, at::Tensor& lse, Precision P) {
  const int64_t n = a.size(0), m = b.size(0), D = a.size(1);
  constexpr int BM = TileCfg<T>::BM;
  const dim3 grid((n + BM - 1) / BM);
  auto stream = c10::cuda::getCurrentCUDAStream();
  const T* ap = a.data_ptr<T>();
  const T* bp = b.data_ptr<T>();
  T* out = lse.data_ptr<T>();
  switch (P) {
    case Precision::kIeee:
      lse_rows_kernel<T, Precision::kIeee><<<grid, kThreads, 0, stream>>>(ap, bp, n, m, D, out);
      break;
    case Precision::kTf32:
      lse_rows_kernel<T, Precision::kTf32><<<grid, kThreads, 0, stream>>>(ap, bp, n, m, D, out);
      break;
    case Precision::kBf16:
      lse_rows_kernel<T, Precision::kBf16><<<grid, kThreads, 0, stream>>>(ap, bp, n, m, D, out);
      break;
  }
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

template <typename T>
void launch_grad(const at::Tensor& a, const at::Tensor& b, const T* lse_row, const T* lse_col,
                 double c, at::Tensor& out, Precision P) {
  const int64_t n = a.size(0), m = b.size(0), D = a.size(1);
  constexpr int BM = TileCfg<T>::BM, SLAB = BM * TileCfg<T>::NCH;
  const dim3 grid((n + BM - 1) / BM, std::max<int64_t>(1, (D + SLAB - 1) / SLAB));
  auto stream = c10::cuda::getCurrentCUDAStream();
  const T* ap = a.data_ptr<T>();
  const T* bp = b.data_ptr<T>();
  T* op = out.data_ptr<T>();
  const T cc = T(c);
  switch (P) {
    case Precision::kIeee:
      grad_rows_kernel<T, Precision::kIeee>
          <<<grid, kThreads, 0, stream>>>(ap, bp, lse_row, lse_col, n, m, D, cc, op);
      break;
    case Precision::kTf32:
      grad_rows_kernel<T, Precision::kTf32>
          <<<grid, kThreads, 0, stream>>>(ap, bp, lse_row, lse_col, n, m, D, cc, op);
      break;
    case Precision::kBf16:
      grad_rows_kernel<T, Precision::kBf16>
          <<<grid, kThreads, 0, stream>>>(ap, bp, lse_row, lse_col, n, m, D, cc, op);
      break;
  }
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> infonce_cuda(const at::Tensor& z_s,
                                                            const at::Tensor& z_t,
                                                            double temperature, bool symmetric,
                                                            c10::string_view precision) {
  const char* op = "gkd::infonce";
  const Precision P = check_infonce(op, z_s, z_t, temperature, symmetric, precision);
  const c10::cuda::CUDAGuard guard(z_s.device());
  const auto st = stat_dtype(z_s);
  const at::Tensor zs = z_s.to(st).contiguous(), zt = z_t.to(st).contiguous();
  const int64_t n = zs.size(0);
  at::Tensor lse_s = at::empty({n}, zs.options());
  at::Tensor lse_t = at::empty({symmetric ? n : 0}, zs.options());
  AT_DISPATCH_FLOATING_TYPES(st, "gkd_infonce_cuda", [&] {
    launch_lse<scalar_t>((zs / temperature).contiguous(), zt, lse_s, P);
    // Columns of S are the rows of Sᵀ = (z_t / tau)·z_sᵀ: a second pass with the roles swapped.
    if (symmetric) launch_lse<scalar_t>((zt / temperature).contiguous(), zs, lse_t, P);
  });
  const at::Tensor diag = infonce_diag(zs, zt, temperature);
  return {infonce_loss(lse_s, lse_t, diag, symmetric).to(z_s.scalar_type()), lse_s, lse_t};
}

std::tuple<at::Tensor, at::Tensor> infonce_backward_cuda(
    const at::Tensor& grad, const at::Tensor& z_s, const at::Tensor& z_t, const at::Tensor& lse_s,
    const at::Tensor& lse_t, double temperature, bool symmetric, c10::string_view precision,
    bool need_s, bool need_t) {
  const char* op = "gkd::infonce_backward";
  const Precision P =
      check_infonce_backward(op, grad, z_s, z_t, lse_s, lse_t, temperature, symmetric, precision);
  const int64_t n = z_s.size(0);
  const auto st = stat_dtype(z_s);
  if (!need_s && !need_t) return {at::empty({0}, z_s.options()), at::empty({0}, z_s.options())};
  const c10::cuda::CUDAGuard guard(z_s.device());
  const at::Tensor zs = z_s.to(st).contiguous(), zt = z_t.to(st).contiguous();
  const at::Tensor ls = lse_s.contiguous();
  const at::Tensor lt = symmetric ? lse_t.contiguous() : at::Tensor();
  const double c = symmetric ? 0.5 / n : 1.0 / n, inv_tau = 1.0 / temperature;
  at::Tensor out_s = at::empty({0}, z_s.options()), out_t = at::empty({0}, z_s.options());
  AT_DISPATCH_FLOATING_TYPES(st, "gkd_infonce_backward_cuda", [&] {
    const scalar_t* lsp = ls.data_ptr<scalar_t>();
    const scalar_t* ltp = symmetric ? lt.data_ptr<scalar_t>() : nullptr;
    if (need_s) {
      at::Tensor acc = at::empty_like(zs);
      launch_grad<scalar_t>((zs / temperature).contiguous(), zt, lsp, ltp, c, acc, P);
      out_s = infonce_finish(acc, zt.narrow(0, 0, n), 1.0 / n, inv_tau, grad, z_s);
    }
    if (need_t) {
      // dz_t = G'ᵀ z_s: rows of Sᵀ (m of them, over n columns), where lse_t is the row term
      // and lse_s the column term; candidate rows >= n get no diagonal term (finish).
      at::Tensor acc = at::empty_like(zt);
      launch_grad<scalar_t>((zt / temperature).contiguous(), zs, ltp, lsp, c, acc, P);
      out_t = infonce_finish(acc, zs, 1.0 / n, inv_tau, grad, z_t);
    }
  });
  return {out_s, out_t};
}

}  // namespace

TORCH_LIBRARY_IMPL(gkd, CUDA, m) {
  m.impl("infonce", &infonce_cuda);
  m.impl("infonce_backward", &infonce_backward_cuda);
}

}  // namespace cuda
}  // namespace gkd
