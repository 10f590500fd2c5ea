// Scalar math that host and device code share (the LSP math of lsp_math.h, the CUDA kernels):
// float and double overloads that call the single- or double-precision function, so templates
// over the accumulator type never promote float to double by accident.
#pragma once

#include <math.h>

#ifdef __CUDACC__
#define GKD_HD __host__ __device__ __forceinline__
#else
#define GKD_HD inline
#endif

namespace gkd {

GKD_HD float fexp(float x) { return expf(x); }
GKD_HD double fexp(double x) { return exp(x); }
GKD_HD float flog(float x) { return logf(x); }
GKD_HD double flog(double x) { return log(x); }
GKD_HD float fsqrt(float x) { return sqrtf(x); }
GKD_HD double fsqrt(double x) { return sqrt(x); }
GKD_HD float fabs_(float x) { return fabsf(x); }
GKD_HD double fabs_(double x) { return fabs(x); }
template <typename A>
GKD_HD A fmax2(A a, A b) { return a > b ? a : b; }
// -1, 0 or 1: the subgradient torch takes for |x| at 0.
template <typename A>
GKD_HD A fsign(A x) { return A(x > A(0)) - A(x < A(0)); }

}  // namespace gkd
