// Gram tiles for the tiled similarity losses (InfoNCE, GSP): S = A[r0:r0+BM] · B[c0:c0+BM]ᵀ
// into shared memory, computed by one 256-thread block, with no library (no cuBLAS).
//
// Mapping: the 256 threads form a 16×16 grid (ty, tx); thread (ty, tx) owns the tile entries
// (ty + 16i, tx + 16j), i, j < BM/16, so a warp's 32 threads read 16 consecutive B rows
// (conflict-free) and two broadcast A rows from shared memory. The feature dimension D is
// walked in chunks of BK staged in shared memory, transposed so the inner product loop reads
// both operands along k. A has nA rows and B nB (InfoNCE: n anchors, m >= n candidates);
// out-of-range rows/columns/features are staged as 0.
#pragma once

#include <c10/macros/Macros.h>
#include <cuda_bf16.h>
#include <mma.h>

#include <cstdint>
#include <type_traits>

#include "../vocab.h"
#include "common.cuh"

namespace gkd {
namespace cuda {

// Tile sizes per element type: float 64×64 tiles with 16-wide k chunks, double 32×32 with 8, so
// the static shared memory of every kernel stays under 48 KB.
template <typename T> struct TileCfg;
// NCH: feature chunks of BM columns per gradient slab (register accumulators of a thread).
template <> struct TileCfg<float> { static constexpr int BM = 64, BK = 16, NCH = 4; };
template <> struct TileCfg<double> { static constexpr int BM = 32, BK = 8, NCH = 4; };

template <typename T>
struct SimtStage {
  static constexpr int BM = TileCfg<T>::BM, BK = TileCfg<T>::BK;
  T a[BK][BM + 4];
  T b[BK][BM + 4];
};

// S tile with exact FMAs in T (the 'ieee' precision).
template <typename T>
__device__ __forceinline__ void gram_tile_simt(const T* __restrict__ A, const T* __restrict__ B,
                                               int64_t nA, int64_t nB, int64_t D, int64_t r0,
                                               int64_t c0, T (*S)[TileCfg<T>::BM + 4]) {
  constexpr int BM = TileCfg<T>::BM, BK = TileCfg<T>::BK, TM = BM / 16;
  __shared__ SimtStage<T> st;
  const int tid = threadIdx.x, ty = tid / 16, tx = tid % 16;
  T acc[TM][TM];
#pragma unroll
  for (int i = 0; i < TM; ++i)
#pragma unroll
    for (int j = 0; j < TM; ++j) acc[i][j] = T(0);
  for (int64_t k0 = 0; k0 < D; k0 += BK) {
    for (int idx = tid; idx < BM * BK; idx += kThreads) {
      const int r = idx / BK, k = idx % BK;
      const int64_t gk = k0 + k, ga = r0 + r, gb = c0 + r;
      st.a[k][r] = (ga < nA && gk < D) ? A[ga * D + gk] : T(0);
      st.b[k][r] = (gb < nB && gk < D) ? B[gb * D + gk] : T(0);
    }
    __syncthreads();
#pragma unroll
    for (int k = 0; k < BK; ++k) {
      T av[TM], bv[TM];
#pragma unroll
      for (int i = 0; i < TM; ++i) av[i] = st.a[k][ty + 16 * i];
#pragma unroll
      for (int j = 0; j < TM; ++j) bv[j] = st.b[k][tx + 16 * j];
#pragma unroll
      for (int i = 0; i < TM; ++i)
#pragma unroll
        for (int j = 0; j < TM; ++j) acc[i][j] = fma(av[i], bv[j], acc[i][j]);
    }
    __syncthreads();
  }
#pragma unroll
  for (int i = 0; i < TM; ++i)
#pragma unroll
    for (int j = 0; j < TM; ++j) S[ty + 16 * i][tx + 16 * j] = acc[i][j];
  __syncthreads();
}

// Tensor-core staging (float inputs only): A and B chunks row-major [64][BK + pad], in the
// fragment's element type. Leading dimensions keep every fragment pointer 32-byte aligned.
template <typename E, int BK>
struct WmmaStage {
  static constexpr int LD = BK + (sizeof(E) == 2 ? 8 : 4);
  alignas(32) E a[64][LD];
  alignas(32) E b[64][LD];
};

// S tile on tensor cores (float inputs, 64×64 tile, fp32 accumulation). tf32: m16n16k8 with
// inputs rounded to tf32; bf16: m16n16k16 with inputs rounded to bfloat16. Warp w computes
// fragment row w/2 and fragment columns 2(w%2), 2(w%2)+1 of the 4×4 fragment grid; S = A·Bᵀ
// reads the B chunk as a column-major K×N matrix, which is the row-major B rows as stored.
template <bool BF16>
__device__ __forceinline__ void gram_tile_wmma(const float* __restrict__ A,
                                               const float* __restrict__ B, int64_t nA, int64_t nB,
                                               int64_t D, int64_t r0, int64_t c0,
                                               float (*S)[64 + 4]) {
  using namespace nvcuda;
  constexpr int BK = 16;
  using E = typename std::conditional<BF16, __nv_bfloat16, float>::type;
  using FragE = typename std::conditional<BF16, __nv_bfloat16, wmma::precision::tf32>::type;
  constexpr int KF = BF16 ? 16 : 8;
  __shared__ WmmaStage<E, BK> st;
  const int tid = threadIdx.x, warp = tid / 32;
  const int fr = warp / 2, fc0 = (warp % 2) * 2;
  wmma::fragment<wmma::accumulator, 16, 16, KF, float> acc[2];
  wmma::fill_fragment(acc[0], 0.0f);
  wmma::fill_fragment(acc[1], 0.0f);
  for (int64_t k0 = 0; k0 < D; k0 += BK) {
    for (int idx = tid; idx < 64 * BK; idx += kThreads) {
      const int r = idx / BK, k = idx % BK;
      const int64_t gk = k0 + k, ga = r0 + r, gb = c0 + r;
      const float va = (ga < nA && gk < D) ? A[ga * D + gk] : 0.0f;
      const float vb = (gb < nB && gk < D) ? B[gb * D + gk] : 0.0f;
      if constexpr (BF16) {
        st.a[r][k] = __float2bfloat16(va);
        st.b[r][k] = __float2bfloat16(vb);
      } else {
        st.a[r][k] = va;
        st.b[r][k] = vb;
      }
    }
    __syncthreads();
#pragma unroll
    for (int kk = 0; kk < BK; kk += KF) {
      wmma::fragment<wmma::matrix_a, 16, 16, KF, FragE, wmma::row_major> fa;
      wmma::load_matrix_sync(fa, &st.a[fr * 16][kk], WmmaStage<E, BK>::LD);
      if constexpr (!BF16) {
        for (int t = 0; t < fa.num_elements; ++t) fa.x[t] = wmma::__float_to_tf32(fa.x[t]);
      }
#pragma unroll
      for (int f = 0; f < 2; ++f) {
        wmma::fragment<wmma::matrix_b, 16, 16, KF, FragE, wmma::col_major> fb;
        wmma::load_matrix_sync(fb, &st.b[(fc0 + f) * 16][kk], WmmaStage<E, BK>::LD);
        if constexpr (!BF16) {
          for (int t = 0; t < fb.num_elements; ++t) fb.x[t] = wmma::__float_to_tf32(fb.x[t]);
        }
        wmma::mma_sync(acc[f], fa, fb, acc[f]);
      }
    }
    __syncthreads();
  }
#pragma unroll
  for (int f = 0; f < 2; ++f)
    wmma::store_matrix_sync(&S[fr * 16][(fc0 + f) * 16], acc[f], 64 + 4, wmma::mem_row_major);
  __syncthreads();
}

// Dispatch on the precision; tensor cores for float only.
template <typename T, Precision P>
__device__ __forceinline__ void gram_tile(const T* A, const T* B, int64_t nA, int64_t nB,
                                          int64_t D, int64_t r0, int64_t c0,
                                          T (*S)[TileCfg<T>::BM + 4]) {
  if constexpr (P == Precision::kIeee || !std::is_same<T, float>::value) {
    gram_tile_simt<T>(A, B, nA, nB, D, r0, c0, S);
  } else {
    gram_tile_wmma<P == Precision::kBf16>(A, B, nA, nB, D, r0, c0, S);
  }
}

// One block's slab of a gradient M = W·X over the candidate tiles: rows [r0, r0 + BM) and
// features [f0, f0 + NCH·BM) of M, where W [rows, n] is formed tile by tile (never stored) and
// X is [n, D] (n: the candidates, add's bound; store's n: the rows of M). Thread (ty, tx) holds M's entries (ty + 16i, f0 + ch·BM + tx + 16j) in registers
// for the whole walk and writes them once, so no other block touches them (no atomics).
template <typename T>
struct Slab {
  static constexpr int BM = TileCfg<T>::BM, TM = BM / 16, NCH = TileCfg<T>::NCH;
  T acc[TM][NCH * TM];

  __device__ __forceinline__ Slab() {
#pragma unroll
    for (int i = 0; i < TM; ++i)
#pragma unroll
      for (int j = 0; j < NCH * TM; ++j) acc[i][j] = T(0);
  }

  // acc += W_tile · X[c0 : c0 + BM, slab], with the W tile of candidate columns c0.. in shared
  // memory; X's rows are staged chunk by chunk (BM features) through the shared buffer V.
  // Called by the whole block; W must be complete (synchronised) on entry.
  __device__ __forceinline__ void add(T (*W)[BM + 4], T (*V)[BM + 4], const T* __restrict__ X,
                                      int64_t n, int64_t D, int64_t c0, int64_t f0) {
    const int ty = threadIdx.x / 16, tx = threadIdx.x % 16;
#pragma unroll
    for (int ch = 0; ch < NCH; ++ch) {
      const int64_t fc = f0 + int64_t(ch) * BM;
      if (fc < D) {  // uniform over the block
        for (int idx = threadIdx.x; idx < BM * BM; idx += kThreads) {
          const int k = idx / BM, f = idx % BM;
          const int64_t gj = c0 + k, gf = fc + f;
          V[k][f] = (gj < n && gf < D) ? X[gj * D + gf] : T(0);
        }
        __syncthreads();
#pragma unroll 4
        for (int k = 0; k < BM; ++k) {
          T gv[TM], vv[TM];
#pragma unroll
          for (int i = 0; i < TM; ++i) gv[i] = W[ty + 16 * i][k];
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

  // out[row, f] = M[row, f] for the rows < n and features < D of the slab (out [n, D]).
  __device__ __forceinline__ void store(T* __restrict__ out, int64_t n, int64_t D, int64_t r0,
                                        int64_t f0) const {
    const int ty = threadIdx.x / 16, tx = threadIdx.x % 16;
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
};

// Sum / max over the 16 lanes sharing a ty (a half warp: lanes tx = 0..15).
template <typename T>
__device__ __forceinline__ T row16_sum(T v) {
#pragma unroll
  for (int off = 8; off > 0; off /= 2) v += __shfl_xor_sync(0xffffffffu, v, off, 16);
  return v;
}

template <typename T>
__device__ __forceinline__ T row16_max(T v) {
#pragma unroll
  for (int off = 8; off > 0; off /= 2) v = max(v, __shfl_xor_sync(0xffffffffu, v, off, 16));
  return v;
}

}  // namespace cuda
}  // namespace gkd
