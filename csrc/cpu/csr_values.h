// The CPU side of the CSR value checks (checks.h lists them and reports the fault): a pass over
// the index tensors before a kernel walks them. Each pass is O(N + E) and streams through
// rowptr, col and t_col / t_perm in order; only the transpose check reads the graph at the
// positions t_perm names (col[e], rowptr[t_col[k]]). The passes split their input into
// blocks scanned with vectorised or-reductions (the exact position is looked up only in a
// block that holds a fault), serially below kParallelWork and otherwise with blocks claimed
// dynamically (parallel.h); the reported fault is the smallest key, whatever the schedule.
#pragma once

#include <ATen/ATen.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <vector>

#include "../checks.h"
#include "parallel.h"

namespace gkd {
namespace cpu {

constexpr int64_t kCheckBlock = int64_t(1) << 14;

inline void atomic_min(std::atomic<int64_t>& a, int64_t v) {
  int64_t cur = a.load(std::memory_order_relaxed);
  while (v < cur && !a.compare_exchange_weak(cur, v, std::memory_order_relaxed)) {
  }
}

// The smallest key block_fault(begin, end) returns over the blocks of [0, n) (kNoFault if none);
// `cost` is the work units per element, for the serial/parallel decision.
template <typename F>
int64_t scan_blocks(int64_t n, int64_t cost, const F& block_fault) {
  const int64_t blocks = (n + kCheckBlock - 1) / kCheckBlock;
  std::atomic<int64_t> best{kNoFault};
  parallel_parts(blocks, threads_for(n * cost), [&](int64_t b) {
    const int64_t begin = b * kCheckBlock;
    atomic_min(best, block_fault(begin, std::min(n, begin + kCheckBlock)));
  });
  return best.load();
}

// rowptr [rows + 1]: starts at 0, never decreases, ends at E.
inline int64_t rowptr_fault(const int64_t* rp, int64_t rows, int64_t E, bool transposed) {
  const CsrFault start = transposed ? CsrFault::kTRowptrStart : CsrFault::kRowptrStart;
  const CsrFault order = transposed ? CsrFault::kTRowptrOrder : CsrFault::kRowptrOrder;
  const CsrFault end = transposed ? CsrFault::kTRowptrEnd : CsrFault::kRowptrEnd;
  if (rp[0] != 0) return fault_key(start, 0);
  const int64_t key = scan_blocks(rows, 1, [&](int64_t b, int64_t e) {
    bool bad = false;
#pragma omp simd reduction(|| : bad)
    for (int64_t i = b; i < e; ++i) bad = bad || rp[i] > rp[i + 1];
    if (!bad) return kNoFault;
    for (int64_t i = b; i < e; ++i)
      if (rp[i] > rp[i + 1]) return fault_key(order, i);
    return kNoFault;
  });
  if (key != kNoFault) return key;
  return rp[rows] != E ? fault_key(end, rows) : kNoFault;
}

// Every idx[k] in [0, hi).
inline int64_t range_fault(const int64_t* idx, int64_t n, int64_t hi, CsrFault kind) {
  const uint64_t bound = static_cast<uint64_t>(hi);
  return scan_blocks(n, 1, [&](int64_t b, int64_t e) {
    bool bad = false;
#pragma omp simd reduction(|| : bad)
    for (int64_t k = b; k < e; ++k) bad = bad || static_cast<uint64_t>(idx[k]) >= bound;
    if (!bad) return kNoFault;
    for (int64_t k = b; k < e; ++k)
      if (static_cast<uint64_t>(idx[k]) >= bound) return fault_key(kind, k);
    return kNoFault;
  });
}

// The forward CSR: rowptr, then col against N_src. Returns the fault key or kNoFault.
inline int64_t csr_fault(const at::Tensor& rowptr, const at::Tensor& col, int64_t num_src) {
  const int64_t rows = rowptr.size(0) - 1, E = col.size(0);
  const int64_t key = rowptr_fault(rowptr.data_ptr<int64_t>(), rows, E, false);
  if (key != kNoFault) return key;
  return range_fault(col.data_ptr<int64_t>(), E, num_src, CsrFault::kColRange);
}

// The transpose of a checked forward CSR. Per transposed edge k in source row j: t_col[k] in
// [0, N_dst), e = t_perm[k] in [0, E), col[e] == j, and e among the incoming edges of t_col[k].
// With matching endpoints everywhere, t_perm is a permutation iff no value repeats. A transpose
// whose t_perm increases along every row (the order Graph.transpose builds: forward positions
// in order) cannot repeat a value, since a repeat would need two rows with the same source;
// any other order is checked for repeats by counting, a second pass.
inline int64_t transpose_fault(const at::Tensor& rowptr_t, const at::Tensor& col_t,
                               const at::Tensor& t_rowptr_t, const at::Tensor& t_col_t,
                               const at::Tensor& t_perm_t) {
  const int64_t n_dst = rowptr_t.size(0) - 1, n_src = t_rowptr_t.size(0) - 1, E = col_t.size(0);
  const int64_t* t_rowptr = t_rowptr_t.data_ptr<int64_t>();
  int64_t key = rowptr_fault(t_rowptr, n_src, E, true);
  if (key != kNoFault || E == 0) return key;
  const int64_t* rowptr = rowptr_t.data_ptr<int64_t>();
  const int64_t* col = col_t.data_ptr<int64_t>();
  const int64_t* t_col = t_col_t.data_ptr<int64_t>();
  const int64_t* t_perm = t_perm_t.data_ptr<int64_t>();
  std::atomic<bool> ordered{true};
  key = scan_blocks(E, 4, [&](int64_t b, int64_t end) {
    // The source row of position b: the last j with t_rowptr[j] <= b (t_rowptr is checked).
    int64_t j = std::upper_bound(t_rowptr, t_rowptr + n_src + 1, b) - t_rowptr - 1;
    int64_t found = kNoFault;
    bool in_order = true;
    for (int64_t k = b; k < end; ++k) {
      while (t_rowptr[j + 1] <= k) ++j;
      const int64_t i = t_col[k], e = t_perm[k];
      int64_t f = kNoFault;
      if (static_cast<uint64_t>(i) >= static_cast<uint64_t>(n_dst)) f = fault_key(CsrFault::kTColRange, k);
      else if (static_cast<uint64_t>(e) >= static_cast<uint64_t>(E)) f = fault_key(CsrFault::kTPermRange, k);
      else if (col[e] != j) f = fault_key(CsrFault::kTPermSource, k);
      else if (e < rowptr[i] || e >= rowptr[i + 1]) f = fault_key(CsrFault::kTPermTarget, k);
      found = std::min(found, f);
      in_order = in_order && (k == t_rowptr[j] || t_perm[k - 1] < e);
    }
    if (!in_order) ordered.store(false, std::memory_order_relaxed);
    return found;
  });
  if (key != kNoFault || ordered.load()) return key;
  // Repeats (rare orders only): count each value, then report the first position whose value
  // occurs more than once. Serial, so the count needs no atomics.
  std::vector<uint8_t> seen(E, 0);
  for (int64_t k = 0; k < E; ++k) seen[t_perm[k]] = seen[t_perm[k]] ? 2 : 1;
  for (int64_t k = 0; k < E; ++k)
    if (seen[t_perm[k]] == 2) return fault_key(CsrFault::kTPermRepeat, k);
  return kNoFault;
}

// Checks the forward CSR (and the transpose when a.t_rowptr is set) and throws the fault's
// RuntimeError. The tensors' shapes, dtypes and devices were checked already (checks.h).
inline void check_csr_values(const char* op, const CsrArgs& a) {
  int64_t key = csr_fault(a.rowptr, a.col, a.num_src);
  if (key == kNoFault && a.t_rowptr.has_value())
    key = transpose_fault(a.rowptr, a.col, *a.t_rowptr, *a.t_col, *a.t_perm);
  if (key != kNoFault) report_csr_fault(op, a, key);
}

}  // namespace cpu
}  // namespace gkd
