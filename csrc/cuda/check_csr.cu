// CUDA kernels of the CSR value checks (csr_values.cuh) and of gkd::check_csr.
//
// Parallel mapping: one thread per index (grid-stride), each testing its own position and
// folding a fault into one device word with atomicMin, so the smallest key wins whatever the
// schedule; a position whose index is out of range is never used to read further. The repeat
// test of t_perm marks each value in a bitset (atomicOr returns whether it was set already) and
// a second pass reports the first position holding a value marked twice.
#include <ATen/ATen.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <algorithm>

#include "../checks.h"
#include "common.cuh"
#include "csr_values.cuh"

namespace gkd {
namespace cuda {
namespace {

using Word = unsigned long long;

__device__ __forceinline__ void note_fault(Word* err, CsrFault kind, int64_t pos) {
  atomicMin(err, static_cast<Word>(fault_key(kind, pos)));
}

// rowptr [rows + 1]: rowptr[0] == 0, rowptr[i] <= rowptr[i + 1], rowptr[rows] == E. `start` is
// kRowptrStart or kTRowptrStart; the order and end kinds follow it.
__global__ void rowptr_kernel(const int64_t* __restrict__ rp, int64_t rows, int64_t E,
                              CsrFault start, Word* err) {
  const auto kind = [&](int d) { return static_cast<CsrFault>(static_cast<int64_t>(start) + d); };
  for (int64_t i = first_index(); i <= rows; i += index_stride()) {
    if (i == 0 && rp[0] != 0) note_fault(err, kind(0), 0);
    if (i < rows && rp[i] > rp[i + 1]) note_fault(err, kind(1), i);
    if (i == rows && rp[rows] != E) note_fault(err, kind(2), rows);
  }
}

__global__ void range_kernel(const int64_t* __restrict__ idx, int64_t n, int64_t hi, CsrFault kind,
                             Word* err) {
  for (int64_t k = first_index(); k < n; k += index_stride())
    if (static_cast<uint64_t>(idx[k]) >= static_cast<uint64_t>(hi)) note_fault(err, kind, k);
}

// Transposed edge k: its source row j (binary search in t_rowptr, clamped, so a malformed
// t_rowptr, itself a smaller fault, still reads in bounds), then t_col, t_perm and endpoints.
__global__ void transpose_kernel(const int64_t* __restrict__ rowptr, const int64_t* __restrict__ col,
                                 int64_t n_dst, int64_t E, const int64_t* __restrict__ t_rowptr,
                                 int64_t n_src, const int64_t* __restrict__ t_col,
                                 const int64_t* __restrict__ t_perm, unsigned* __restrict__ seen,
                                 unsigned* __restrict__ twice, Word* err) {
  for (int64_t k = first_index(); k < E; k += index_stride()) {
    int64_t lo = 0, hi = n_src;  // the last j in [0, n_src) with t_rowptr[j] <= k
    while (hi - lo > 1) {
      const int64_t mid = lo + (hi - lo) / 2;
      if (t_rowptr[mid] <= k) lo = mid; else hi = mid;
    }
    const int64_t j = lo, i = t_col[k], e = t_perm[k];
    if (static_cast<uint64_t>(i) >= static_cast<uint64_t>(n_dst)) {
      note_fault(err, CsrFault::kTColRange, k);
      continue;
    }
    if (static_cast<uint64_t>(e) >= static_cast<uint64_t>(E)) {
      note_fault(err, CsrFault::kTPermRange, k);
      continue;
    }
    if (col[e] != j) note_fault(err, CsrFault::kTPermSource, k);
    if (e < rowptr[i] || e >= rowptr[i + 1]) note_fault(err, CsrFault::kTPermTarget, k);
    const unsigned bit = 1u << (e & 31);
    if (atomicOr(seen + (e >> 5), bit) & bit) atomicOr(twice + (e >> 5), bit);
  }
}

__global__ void repeat_kernel(const int64_t* __restrict__ t_perm, int64_t E,
                              const unsigned* __restrict__ twice, Word* err) {
  for (int64_t k = first_index(); k < E; k += index_stride()) {
    const int64_t e = t_perm[k];
    if (static_cast<uint64_t>(e) < static_cast<uint64_t>(E) && (twice[e >> 5] >> (e & 31)) & 1u)
      note_fault(err, CsrFault::kTPermRepeat, k);
  }
}

// A fault found while the stream is captured: no sync is possible, so stop the device.
__global__ void trap_kernel(const Word* err) {
  if (*err != static_cast<Word>(kNoFault)) {
    printf("gkd: malformed CSR index tensors (fault key %lld, see csrc/checks.h); run the call "
           "outside CUDA graph capture for the error message\n",
           static_cast<long long>(*err));
    CUDA_KERNEL_ASSERT(false && "gkd: malformed CSR index tensors");
  }
}


}  // namespace

void check_csr_values_cuda(const char* op, const CsrArgs& a) {
  const c10::cuda::CUDAGuard guard(a.rowptr.device());
  const auto stream = c10::cuda::getCurrentCUDAStream();
  const int64_t rows = a.rowptr.size(0) - 1, E = a.col.size(0);
  at::Tensor err = at::full({1}, kNoFault, a.rowptr.options());
  Word* ep = reinterpret_cast<Word*>(err.data_ptr<int64_t>());
  rowptr_kernel<<<grid_for(rows + 1), kThreads, 0, stream>>>(a.rowptr.data_ptr<int64_t>(), rows, E,
                                                            CsrFault::kRowptrStart, ep);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  if (E > 0) {
    range_kernel<<<grid_for(E), kThreads, 0, stream>>>(a.col.data_ptr<int64_t>(), E, a.num_src,
                                                       CsrFault::kColRange, ep);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }
  if (a.t_rowptr.has_value()) {
    const int64_t n_src = a.t_rowptr->size(0) - 1;
    rowptr_kernel<<<grid_for(n_src + 1), kThreads, 0, stream>>>(
        a.t_rowptr->data_ptr<int64_t>(), n_src, E, CsrFault::kTRowptrStart, ep);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    if (E > 0 && n_src > 0) {
      at::Tensor bits = at::zeros({2 * ((E + 31) / 32)}, a.col.options().dtype(at::kInt));
      unsigned* seen = reinterpret_cast<unsigned*>(bits.data_ptr<int32_t>());
      unsigned* twice = seen + (E + 31) / 32;
      const int64_t* t_perm = a.t_perm->data_ptr<int64_t>();
      transpose_kernel<<<grid_for(E), kThreads, 0, stream>>>(
          a.rowptr.data_ptr<int64_t>(), a.col.data_ptr<int64_t>(), rows, E,
          a.t_rowptr->data_ptr<int64_t>(), n_src, a.t_col->data_ptr<int64_t>(), t_perm, seen,
          twice, ep);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
      repeat_kernel<<<grid_for(E), kThreads, 0, stream>>>(t_perm, E, twice, ep);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    }
  }
  cudaStreamCaptureStatus capture = cudaStreamCaptureStatusNone;
  C10_CUDA_CHECK(cudaStreamIsCapturing(stream, &capture));
  if (capture != cudaStreamCaptureStatusNone) {
    trap_kernel<<<1, 1, 0, stream>>>(ep);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    return;
  }
  const int64_t key = err.item<int64_t>();
  if (key != kNoFault) report_csr_fault(op, a, key);
}

namespace {

void check_csr_cuda(const at::Tensor& rowptr, const at::Tensor& col, int64_t num_src,
                    const c10::optional<at::Tensor>& t_rowptr, const c10::optional<at::Tensor>& t_col,
                    const c10::optional<at::Tensor>& t_perm) {
  const char* op = "gkd::check_csr";
  check_csr_values_cuda(op, check_csr_op(op, rowptr, col, num_src, t_rowptr, t_col, t_perm));
}

}  // namespace

TORCH_LIBRARY_IMPL(gkd, CUDA, m) {
  m.impl("check_csr", &check_csr_cuda);
}

}  // namespace cuda
}  // namespace gkd
