// CUDA kernels of gkd::infonce and gkd::infonce_backward (tiled G-CRD InfoNCE).
//
// Inputs in float16/bfloat16 are computed in float32; 'tf32' and 'bf16' precisions compute the
// logit tiles on tensor cores (WMMA) with fp32 accumulation, everything else in fp32 (fp64 for
// double inputs). No atomics anywhere: every output element has exactly one writer.
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

// Row log-sum-exps of S = A·Bᵀ (A already scaled by 1/tau).
// Mapping: one block per BM anchor rows, walking all candidate tiles (the FlashAttention
// forward); thread (ty, tx) keeps the running (max, sum) of its TM rows, replicated over the 16
// lanes of its half warp, which combine their tile entries by shuffles.
// Online log-sum-exp: per tile, m' = max(m, tile max); s = s·exp(m - m') + Σ exp(x - m'), so
// every exponent is <= 0 and the result is max + log(sum) without overflow at any temperature.
template <typename T, int P>
__global__ void __launch_bounds__(kThreads)
    lse_rows_kernel(const T* __restrict__ A, const T* __restrict__ B, int64_t n, int64_t D,
                    T* __restrict__ lse) {
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
  for (int64_t c0 = 0; c0 < n; c0 += BM) {
    gram_tile<T, P>(A, B, n, D, r0, c0, S);
#pragma unroll
    for (int i = 0; i < TM; ++i) {
      T x[TM];
      T mx = neg_inf;
#pragma unroll
      for (int j = 0; j < TM; ++j) {
        const int64_t col = c0 + tx + 16 * j;
        x[j] = col < n ? S[ty + 16 * i][tx + 16 * j] : neg_inf;
        mx = max(mx, x[j]);
      }
      // Column c0 < n is valid, so the tile maximum is finite.
      const T mnew = max(m[i], row16_max(mx));
      T sum = T(0);
#pragma unroll
      for (int j = 0; j < TM; ++j) sum += dexp(x[j] - mnew);
      sum = row16_sum(sum);
      s[i] = s[i] * dexp(m[i] - mnew) + sum;
      m[i] = mnew;
    }
    __syncthreads();
  }
  if (tx == 0) {
#pragma unroll
    for (int i = 0; i < TM; ++i) {
      const int64_t row = r0 + ty + 16 * i;
      if (row < n) lse[row] = m[i] + dlog(s[i]);
    }
  }
}

// out[i, f] = Σ_j G'_ij B[j, f] with G'_ij = c·(exp(S_ij - lse_row[i]) + exp(S_ij - lse_col[j])),
// either term absent when its pointer is null; S = A·Bᵀ recomputed per tile.
// Mapping: block (x, y) owns BM rows and a slab of NCH·BM output features, so its outputs live
// in registers (TM × NCH·TM per thread) for the whole walk over candidate tiles and are
// written once; no other block touches them (deterministic, no atomics). Per candidate tile the
// G' tile replaces S in shared memory, then the slab's B rows are staged chunk by chunk and
// multiplied in. Wider features take more slabs (grid y), each recomputing S.
template <typename T, int P>
__global__ void __launch_bounds__(kThreads)
    grad_rows_kernel(const T* __restrict__ A, const T* __restrict__ B,
                     const T* __restrict__ lse_row, const T* __restrict__ lse_col, int64_t n,
                     int64_t D, T c, T* __restrict__ out) {
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
    lr[i] = (lse_row != nullptr && row < n) ? lse_row[row] : T(0);
  }
  T acc[TM][NCH * TM];
#pragma unroll
  for (int i = 0; i < TM; ++i)
#pragma unroll
    for (int j = 0; j < NCH * TM; ++j) acc[i][j] = T(0);

  for (int64_t c0 = 0; c0 < n; c0 += BM) {
    gram_tile<T, P>(A, B, n, D, r0, c0, S);
#pragma unroll
    for (int i = 0; i < TM; ++i) {
#pragma unroll
      for (int j = 0; j < TM; ++j) {
        const int64_t row = r0 + ty + 16 * i, col = c0 + tx + 16 * j;
        T g = T(0);
        if (row < n && col < n) {
          const T x = S[ty + 16 * i][tx + 16 * j];
          if (lse_row != nullptr) g += dexp(x - lr[i]);
          if (lse_col != nullptr) g += dexp(x - lse_col[col]);
          g *= c;
        }
        S[ty + 16 * i][tx + 16 * j] = g;
      }
    }
    __syncthreads();
#pragma unroll
    for (int ch = 0; ch < NCH; ++ch) {
      const int64_t fc = f0 + int64_t(ch) * BM;
      if (fc < D) {  // uniform over the block
        for (int idx = threadIdx.x; idx < BM * BM; idx += kThreads) {
          const int k = idx / BM, f = idx % BM;
          const int64_t gj = c0 + k, gf = fc + f;
          V[k][f] = (gj < n && gf < D) ? B[gj * D + gf] : T(0);
        }
        __syncthreads();
#pragma unroll 4
        for (int k = 0; k < BM; ++k) {
          T gv[TM], vv[TM];
#pragma unroll
          for (int i = 0; i < TM; ++i) gv[i] = S[ty + 16 * i][k];
#pragma unroll
          for (int j = 0; j < TM; ++j) vv[j] = V[k][tx + 16 * j];
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
    if (row >= n) continue;
#pragma unroll
    for (int ch = 0; ch < NCH; ++ch)
#pragma unroll
      for (int j = 0; j < TM; ++j) {
        const int64_t f = f0 + int64_t(ch) * BM + tx + 16 * j;
        if (f < D) out[row * D + f] = acc[i][ch * TM + j];
      }
  }
}

template <typename T>
void launch_lse(const at::Tensor& a, const at::Tensor& b, at::Tensor& lse, int P) {
  const int64_t n = a.size(0), D = a.size(1);
  constexpr int BM = TileCfg<T>::BM;
  const dim3 grid((n + BM - 1) / BM);
  auto stream = c10::cuda::getCurrentCUDAStream();
  const T* ap = a.data_ptr<T>();
  const T* bp = b.data_ptr<T>();
  T* out = lse.data_ptr<T>();
  if (P == kTf32) lse_rows_kernel<T, 1><<<grid, kThreads, 0, stream>>>(ap, bp, n, D, out);
  else if (P == kBf16) lse_rows_kernel<T, 2><<<grid, kThreads, 0, stream>>>(ap, bp, n, D, out);
  else lse_rows_kernel<T, 0><<<grid, kThreads, 0, stream>>>(ap, bp, n, D, out);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

template <typename T>
void launch_grad(const at::Tensor& a, const at::Tensor& b, const T* lse_row, const T* lse_col,
                 double c, at::Tensor& out, int P) {
  const int64_t n = a.size(0), D = a.size(1);
  constexpr int BM = TileCfg<T>::BM, SLAB = BM * TileCfg<T>::NCH;
  const dim3 grid((n + BM - 1) / BM, std::max<int64_t>(1, (D + SLAB - 1) / SLAB));
  auto stream = c10::cuda::getCurrentCUDAStream();
  const T* ap = a.data_ptr<T>();
  const T* bp = b.data_ptr<T>();
  T* op = out.data_ptr<T>();
  const T cc = T(c);
  if (P == kTf32)
    grad_rows_kernel<T, 1><<<grid, kThreads, 0, stream>>>(ap, bp, lse_row, lse_col, n, D, cc, op);
  else if (P == kBf16)
    grad_rows_kernel<T, 2><<<grid, kThreads, 0, stream>>>(ap, bp, lse_row, lse_col, n, D, cc, op);
  else
    grad_rows_kernel<T, 0><<<grid, kThreads, 0, stream>>>(ap, bp, lse_row, lse_col, n, D, cc, op);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

int check_infonce_cuda(const char* op, const at::Tensor& z_s, const at::Tensor& z_t,
                       double temperature, c10::string_view precision) {
  check_embedding_pair(op, z_s, "z_s", z_t, "z_t", true);
  check_positive(op, "temperature", temperature);
  const int P = precision_code(op, precision, true);
  TORCH_CHECK(P == kIeee || z_s.scalar_type() != at::kDouble, op, ": argument 'precision'='",
              std::string(precision), "' needs float32/float16/bfloat16 inputs, got float64");
  return P;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> infonce_cuda(const at::Tensor& z_s,
                                                            const at::Tensor& z_t,
                                                            double temperature, bool symmetric,
                                                            c10::string_view precision) {
  const char* op = "gkd::infonce";
  const int P = check_infonce_cuda(op, z_s, z_t, temperature, precision);
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
  const int P = check_infonce_cuda(op, z_s, z_t, temperature, precision);
  const int64_t n = z_s.size(0);
  const auto st = stat_dtype(z_s);
  check_scalar_grad(op, grad, z_s);
  check_row_stat(op, "lse_s", lse_s, n, z_s, st);
  if (symmetric) check_row_stat(op, "lse_t", lse_t, n, z_s, st);
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
      out_s = infonce_finish(acc, zt, 1.0 / n, inv_tau, grad, z_s);
    }
    if (need_t) {
      // dz_t = G'ᵀ z_s: rows of Sᵀ, where lse_t is the row term and lse_s the column term.
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
