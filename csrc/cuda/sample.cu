// CUDA kernel of gkd::sample_neighbors (csrc/gkd_ext.cpp has the contract, sample_math.h the
// per-row sampling both backends share, so a seed gives the CPU kernel's sample exactly).
//
// Parallel mapping: one thread per sampled row (count kernel, then sample kernel writing the
// row's slice of the output), then the relabelling without a host table: an N-entry map takes,
// by atomicMin, the smallest position at which each global id appears (the n `nodes` first,
// then sampled edge p at n + p), so a sampled source is new exactly where the map holds its own
// position; a scan of those flags numbers the new sources in order of first appearance, the
// CPU kernel's order. Faults are folded into one device word (smallest key wins, as in
// check_csr.cu) and read with the sizes the host needs anyway: two syncs per call.
#include <ATen/ATen.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <algorithm>
#include <tuple>

#include "../checks.h"
#include "../sample_math.h"
#include "common.cuh"

namespace gkd {
namespace cuda {
namespace {

using Word = unsigned long long;

__device__ __forceinline__ void note(Word* err, SampleFault kind, int64_t pos) {
  atomicMin(err, static_cast<Word>(sample_fault_key(kind, pos)));
}

// counts[i]: the sample size of row nodes[i] (0 for a faulty row, whose fault is noted).
__global__ void count_kernel(const int64_t* __restrict__ rp, int64_t N, int64_t E,
                             const int64_t* __restrict__ nodes, int64_t n, int64_t fanout,
                             bool replace, int64_t* __restrict__ counts, Word* err) {
  for (int64_t i = first_index(); i < n; i += index_stride()) {
    const int64_t v = nodes[i];
    int64_t count = 0;
    if (v < 0 || v >= N) {
      note(err, SampleFault::kNodeRange, i);
    } else if (!(0 <= rp[v] && rp[v] <= rp[v + 1] && rp[v + 1] <= E)) {
      note(err, SampleFault::kRowptr, i);
    } else {
      count = sample_count(rp[v + 1] - rp[v], fanout, replace);
    }
    counts[i] = count;
  }
}

// Each row's sampled edge positions (into eid) and their global sources (into nbr; -1 for a
// source outside [0, N), whose fault is noted).
__global__ void sample_kernel(const int64_t* __restrict__ rp, const int64_t* __restrict__ col,
                              int64_t N, const int64_t* __restrict__ nodes, int64_t n,
                              const int64_t* __restrict__ orp, bool replace, uint64_t seed,
                              int64_t* __restrict__ eid, int64_t* __restrict__ nbr, Word* err) {
  for (int64_t i = first_index(); i < n; i += index_stride()) {
    const int64_t v = nodes[i], first = rp[v], begin = orp[i], count = orp[i + 1] - begin;
    int64_t* out = eid + begin;
    sample_row(seed, v, rp[v + 1] - first, count, replace, out);
    for (int64_t q = 0; q < count; ++q) {
      const int64_t e = out[q] + first, u = col[e];
      out[q] = e;
      if (u < 0 || u >= N) {
        note(err, SampleFault::kColRange, e);
        nbr[begin + q] = -1;
      } else {
        nbr[begin + q] = u;
      }
    }
  }
}

// map[nodes[i]] = i (the smallest position of a repeated node stays; the others note a fault).
__global__ void seat_nodes_kernel(const int64_t* __restrict__ nodes, int64_t n,
                                  unsigned long long* __restrict__ map, Word* err) {
  for (int64_t i = first_index(); i < n; i += index_stride()) {
    const Word old = atomicMin(map + nodes[i], static_cast<Word>(i));
    // Of a repeated node's positions every one but the first meets a smaller or larger one
    // here; the later of the two is a repeat, so the smallest noted key is the second
    // occurrence of the earliest-repeated node, as the CPU kernel reports.
    if (old != ~Word(0)) note(err, SampleFault::kNodeRepeat, max(static_cast<int64_t>(old), i));
  }
}

__global__ void seat_sources_kernel(const int64_t* __restrict__ nbr, int64_t sampled, int64_t n,
                                    unsigned long long* __restrict__ map) {
  for (int64_t p = first_index(); p < sampled; p += index_stride())
    if (nbr[p] >= 0) atomicMin(map + nbr[p], static_cast<Word>(n + p));
}

__global__ void first_kernel(const int64_t* __restrict__ nbr, int64_t sampled, int64_t n,
                             const unsigned long long* __restrict__ map, int64_t* __restrict__ is_new) {
  for (int64_t p = first_index(); p < sampled; p += index_stride())
    is_new[p] = nbr[p] >= 0 && map[nbr[p]] == static_cast<Word>(n + p);
}

// new_pos: inclusive scan of is_new, so the new source first seen at p gets local id
// n + new_pos[p] - 1.
__global__ void relabel_kernel(const int64_t* __restrict__ nbr, int64_t sampled, int64_t n,
                               const unsigned long long* __restrict__ map,
                               const int64_t* __restrict__ new_pos, int64_t* __restrict__ out_col,
                               int64_t* __restrict__ src) {
  for (int64_t p = first_index(); p < sampled; p += index_stride()) {
    const int64_t u = nbr[p];
    if (u < 0) {
      out_col[p] = 0;
      continue;
    }
    const int64_t m = static_cast<int64_t>(map[u]);
    out_col[p] = m < n ? m : n + new_pos[m - n] - 1;
    if (m == n + p) src[n + new_pos[p] - 1] = u;
  }
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> sample_neighbors_cuda(
    const at::Tensor& rowptr, const at::Tensor& col, const at::Tensor& nodes, int64_t fanout,
    bool replace, int64_t seed) {
  const char* op = "gkd::sample_neighbors";
  const int64_t N = check_sample(op, rowptr, col, nodes, fanout);
  const c10::cuda::CUDAGuard guard(rowptr.device());
  const auto stream = c10::cuda::getCurrentCUDAStream();
  const int64_t n = nodes.size(0), E = col.size(0);
  const auto opts = rowptr.options();
  const int64_t* rp = rowptr.data_ptr<int64_t>();
  const int64_t* nd = nodes.data_ptr<int64_t>();

  // Stage 1: the rows. status = (fault word, sampled edge count), read in one copy.
  at::Tensor status = at::full({2}, kNoFault, opts);
  Word* err = reinterpret_cast<Word*>(status.data_ptr<int64_t>());
  at::Tensor out_rowptr = at::zeros({n + 1}, opts);
  if (n > 0) {
    at::Tensor counts = at::empty({n}, opts);
    count_kernel<<<grid_for(n), kThreads, 0, stream>>>(rp, N, E, nd, n, fanout, replace,
                                                        counts.data_ptr<int64_t>(), err);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    at::Tensor tail = out_rowptr.narrow(0, 1, n);
    at::cumsum_out(tail, counts, 0);
    status.narrow(0, 1, 1).copy_(out_rowptr.narrow(0, n, 1));
  } else {
    status.narrow(0, 1, 1).zero_();
  }
  at::Tensor host = status.cpu();
  if (host[0].item<int64_t>() != kNoFault)
    report_sample_fault(op, rowptr, col, nodes, host[0].item<int64_t>());
  const int64_t sampled = host[1].item<int64_t>();

  // Stage 2: sample, seat the ids, number the new sources.
  at::Tensor edge_ids = at::empty({sampled}, opts), nbr = at::empty({sampled}, opts);
  at::Tensor map = at::full({std::max<int64_t>(N, 1)}, -1, opts);  // all bits set: "unseen"
  auto* mp = reinterpret_cast<unsigned long long*>(map.data_ptr<int64_t>());
  if (n > 0) {
    sample_kernel<<<grid_for(n), kThreads, 0, stream>>>(
        rp, col.data_ptr<int64_t>(), N, nd, n, out_rowptr.data_ptr<int64_t>(), replace,
        static_cast<uint64_t>(seed), edge_ids.data_ptr<int64_t>(), nbr.data_ptr<int64_t>(), err);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    seat_nodes_kernel<<<grid_for(n), kThreads, 0, stream>>>(nd, n, mp, err);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }
  at::Tensor new_pos = at::zeros({sampled}, opts);
  if (sampled > 0) {
    seat_sources_kernel<<<grid_for(sampled), kThreads, 0, stream>>>(nbr.data_ptr<int64_t>(), sampled,
                                                                    n, mp);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    at::Tensor is_new = at::empty({sampled}, opts);
    first_kernel<<<grid_for(sampled), kThreads, 0, stream>>>(nbr.data_ptr<int64_t>(), sampled, n, mp,
                                                             is_new.data_ptr<int64_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    at::cumsum_out(new_pos, is_new, 0);
    status.narrow(0, 1, 1).copy_(new_pos.narrow(0, sampled - 1, 1));
  } else {
    status.narrow(0, 1, 1).zero_();
  }
  host = status.cpu();
  if (host[0].item<int64_t>() != kNoFault)
    report_sample_fault(op, rowptr, col, nodes, host[0].item<int64_t>());
  const int64_t n_src = n + host[1].item<int64_t>();

  at::Tensor out_col = at::empty({sampled}, opts);
  at::Tensor src = at::empty({n_src}, opts);
  src.narrow(0, 0, n).copy_(nodes);
  if (sampled > 0) {
    relabel_kernel<<<grid_for(sampled), kThreads, 0, stream>>>(
        nbr.data_ptr<int64_t>(), sampled, n, mp, new_pos.data_ptr<int64_t>(),
        out_col.data_ptr<int64_t>(), src.data_ptr<int64_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }
  return {out_rowptr, out_col, src, edge_ids};
}

}  // namespace

TORCH_LIBRARY_IMPL(gkd, CUDA, m) {
  m.impl("sample_neighbors", &sample_neighbors_cuda);
}

}  // namespace cuda
}  // namespace gkd
