// Device helpers shared by the CUDA kernels: the block shape, aligned vector access, lane
// groups smaller than a warp, group reductions, and (hd_math.h) float/double math overloads.
#pragma once

#include <ATen/OpMathType.h>
#include <c10/macros/Macros.h>

#include <cstdint>

#include "../hd_math.h"

namespace gkd {
namespace cuda {

constexpr int kThreads = 256;  // threads per block in every kernel
constexpr int kWarp = 32;
constexpr unsigned kFullMask = 0xffffffffu;

// Grid-stride loops over n items: this thread's first index and the stride, and a grid of
// kThreads-thread blocks for n items (at least 1 block, at most 2^16: the loop covers the rest).
__device__ __forceinline__ int64_t first_index() {
  return static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
}
__device__ __forceinline__ int64_t index_stride() {
  return static_cast<int64_t>(gridDim.x) * blockDim.x;
}
inline unsigned grid_for(int64_t n) {
  const int64_t blocks = (n + kThreads - 1) / kThreads;
  return static_cast<unsigned>(blocks < 1 ? 1 : (blocks > (int64_t(1) << 16) ? (int64_t(1) << 16) : blocks));
}

// Elements of T in the widest vector access, 16 bytes.
template <typename T>
constexpr int max_vec() { return 16 / static_cast<int>(sizeof(T)); }

// VEC consecutive elements moved with one load/store instruction (16 bytes at most).
template <typename T, int VEC>
struct alignas(sizeof(T) * VEC) Vec {
  T v[VEC];
};

template <typename T, int VEC>
__device__ __forceinline__ Vec<T, VEC> load_vec(const T* p) {
  return *reinterpret_cast<const Vec<T, VEC>*>(p);
}

template <typename T, int VEC>
__device__ __forceinline__ void store_vec(T* p, const Vec<T, VEC>& v) {
  *reinterpret_cast<Vec<T, VEC>*>(p) = v;
}

// A warp is split into 32/G groups of G lanes (G a power of two); each group works on one row.
// Where groups of a warp diverge (rows have different degrees), every shuffle names only its
// own group's lanes in the mask rather than the whole warp.
__device__ __forceinline__ unsigned group_mask(int G) {
  if (G >= kWarp) return kFullMask;
  const int lane = threadIdx.x & 31;
  return ((1u << G) - 1u) << (lane & ~(G - 1));
}

// Sum / max over each group of G lanes, left in every lane of the group; 'mask' names the lanes
// that call it (group_mask(G), or kFullMask where every lane of the warp does).
template <typename T>
__device__ __forceinline__ T group_sum(T v, unsigned mask, int G) {
  for (int off = G / 2; off > 0; off /= 2) v += __shfl_xor_sync(mask, v, off, G);
  return v;
}

template <typename T>
__device__ __forceinline__ T group_max(T v, unsigned mask, int G) {
  for (int off = G / 2; off > 0; off /= 2) v = max(v, __shfl_xor_sync(mask, v, off, G));
  return v;
}

// Largest power of two <= 32 that is >= n (n >= 1).
inline int lanes_for(int64_t n) {
  int g = 1;
  while (g < 32 && g < n) g *= 2;
  return g;
}

// Widest vector (in elements, at most 16 bytes) that divides `width` and keeps every row of a
// tensor with row stride `width` aligned.
inline int vec_width(int64_t width, int elem_size, const void* ptr) {
  int vec = 16 / elem_size;  // max_vec
  while (vec > 1 && (width % vec != 0 || reinterpret_cast<uintptr_t>(ptr) % (vec * elem_size) != 0))
    vec /= 2;
  return vec;
}

}  // namespace cuda
}  // namespace gkd
