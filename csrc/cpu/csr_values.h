// The CPU side of the CSR value checks (checks.h lists them and reports the fault): a pass over
// the index tensors before a kernel walks them. Each pass is O(N + E) and streams through
// rowptr, col and t_col / t_perm in order (the transpose is compared with the graph by
// fingerprints; only a mismatch runs the exact check, which reads the graph at the positions
// t_perm names to find the fault). The passes split their input into
// blocks scanned with vectorised or-reductions (the exact position is looked up only in a
// block that holds a fault), serially below kParallelWork and otherwise with blocks claimed
// dynamically (parallel.h); the reported fault is the smallest key, whatever the schedule.
#pragma once

#include <ATen/ATen.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <random>
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

// The transpose of a checked forward CSR, exactly (the slow path of transpose_fault below).
// Per transposed edge k in source row j: t_col[k] in
// [0, N_dst), e = t_perm[k] in [0, E), col[e] == j, and e among the incoming edges of t_col[k].
// With matching endpoints everywhere, t_perm is a permutation iff no value repeats. A transpose
// whose t_perm increases along every row (the order Graph.transpose builds: forward positions
// in order) cannot repeat a value, since a repeat would need two rows with the same source;
// any other order is checked for repeats by counting, a second pass.
inline int64_t transpose_fault_exact(const at::Tensor& rowptr_t, const at::Tensor& col_t,
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

// ---------------------------------------------------------------- transpose fingerprints
// The exact transpose check reads col[t_perm[k]] and rowptr[t_col[k]] at random positions: on
// arxiv (E = 2.3M) about 80 ms, a fifth of spmm_backward. The fast path reads everything in
// order instead. A transpose whose indices are in range is the graph's own iff it lists the
// same (source, target, edge) triples: the graph's edges are distinct (e is the position), so
// equal multisets make t_perm a permutation with the right endpoints. The multisets are
// compared by the sum (mod 2^64) of a keyed 64-bit hash of each triple, the key drawn once per
// process, so inputs cannot be built to collide; two different multisets agree with
// probability about 2^-64. On a mismatch the exact check runs and reports the fault.
inline uint64_t mix64(uint64_t z) {  // splitmix64's finaliser
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

struct FingerprintKey {
  uint64_t k0, k1, k2;  // k1, k2 odd
};

inline const FingerprintKey& fingerprint_key() {
  static const FingerprintKey key = [] {
    std::random_device rd;
    const auto draw = [&] { return (uint64_t(rd()) << 32) ^ uint64_t(rd()); };
    return FingerprintKey{draw(), draw() | 1, draw() | 1};
  }();
  return key;
}

// Not a sum of per-field hashes (that would compare the three fields' multisets separately):
// the endpoints are folded into the mixed edge position, so their pairing with it counts.
inline uint64_t edge_hash(const FingerprintKey& key, int64_t src, int64_t dst, int64_t e) {
  return mix64(mix64(key.k0 ^ uint64_t(e)) + uint64_t(src) * key.k1 + uint64_t(dst) * key.k2);
}

// The transpose check: one pass over each side (one parallel region for both, since on a busy
// machine every region may wait a scheduler time slice for a descheduled thread), then the
// exact range faults if any index was out of range, else the fingerprints compared, and the
// exact check only on a mismatch.
inline int64_t transpose_fault(const at::Tensor& rowptr_t, const at::Tensor& col_t,
                               const at::Tensor& t_rowptr_t, const at::Tensor& t_col_t,
                               const at::Tensor& t_perm_t) {
  const int64_t n_dst = rowptr_t.size(0) - 1, n_src = t_rowptr_t.size(0) - 1, E = col_t.size(0);
  const int64_t* t_rowptr = t_rowptr_t.data_ptr<int64_t>();
  int64_t key = rowptr_fault(t_rowptr, n_src, E, true);
  if (key != kNoFault || E == 0) return key;
  const FingerprintKey& hk = fingerprint_key();
  const int64_t* rowptr = rowptr_t.data_ptr<int64_t>();
  const int64_t* col = col_t.data_ptr<int64_t>();
  const int64_t* t_col = t_col_t.data_ptr<int64_t>();
  const int64_t* t_perm = t_perm_t.data_ptr<int64_t>();
  const int64_t blocks = (E + kCheckBlock - 1) / kCheckBlock;
  std::atomic<uint64_t> sum_graph{0}, sum_transpose{0};
  std::atomic<bool> out_of_range{false};
  // Parts [0, blocks) hash the graph's edges, [blocks, 2 blocks) the transpose's. The hash
  // reads no memory at t_col[k] or t_perm[k], so out-of-range values are safe to hash.
  parallel_parts(2 * blocks, threads_for(E * 8), [&](int64_t p) {
    const bool tr = p >= blocks;
    const int64_t begin = (tr ? p - blocks : p) * kCheckBlock;
    const int64_t end = std::min(E, begin + kCheckBlock);
    const int64_t* rp = tr ? t_rowptr : rowptr;
    int64_t r = std::upper_bound(rp, rp + (tr ? n_src : n_dst) + 1, begin) - rp - 1;
    uint64_t sum = 0;
    if (!tr) {
      for (int64_t k = begin; k < end; ++k) {
        while (rp[r + 1] <= k) ++r;
        sum += edge_hash(hk, col[k], r, k);
      }
      sum_graph.fetch_add(sum, std::memory_order_relaxed);
      return;
    }
    bool bad = false;
    for (int64_t k = begin; k < end; ++k) {
      while (rp[r + 1] <= k) ++r;
      const int64_t i = t_col[k], e = t_perm[k];
      bad = bad || static_cast<uint64_t>(i) >= static_cast<uint64_t>(n_dst) ||
            static_cast<uint64_t>(e) >= static_cast<uint64_t>(E);
      sum += edge_hash(hk, r, i, e);
    }
    sum_transpose.fetch_add(sum, std::memory_order_relaxed);
    if (bad) out_of_range.store(true, std::memory_order_relaxed);
  });
  if (out_of_range.load()) {
    // The range kinds come first in CsrFault, so the smallest range fault is the one to report.
    key = range_fault(t_col, E, n_dst, CsrFault::kTColRange);
    return key != kNoFault ? key : range_fault(t_perm, E, E, CsrFault::kTPermRange);
  }
  if (sum_graph.load() == sum_transpose.load()) return kNoFault;
  key = transpose_fault_exact(rowptr_t, col_t, t_rowptr_t, t_col_t, t_perm_t);
  // Unreachable in exact arithmetic (the exact check passing means equal multisets); kept so a
  // mismatch is never let through.
  return key != kNoFault ? key : fault_key(CsrFault::kTPermRepeat, 0);
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
