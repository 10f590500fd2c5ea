// Work partitioning shared by the CPU kernels.
//
// Busy machines. An OpenMP region ends with a barrier: the calling thread returns only when
// every thread of the team has finished its share. With a static split (at::parallel_for gives
// thread t the t-th contiguous range) a thread that the OS has descheduled, because another
// process holds its core, stalls the whole region until it runs again, often a full scheduler
// time slice (milliseconds), and a waiting thread that spins keeps its own core from the thread
// it waits for. Two rules follow:
//   - small work runs serially (no region at all): a region must have enough work that a
//     stall of a time slice is small beside it (kParallelWork);
//   - a region's threads claim parts one at a time from a shared counter (parallel_parts), so
//     a thread that is running takes over the parts a descheduled one has not started, and
//     the barrier waits for at most the part that thread is in.
// Results never depend on which thread ran a part: every output element is written by the one
// part that owns it.
#pragma once

#include <ATen/Parallel.h>

#include <algorithm>
#include <atomic>
#include <vector>

namespace gkd {
namespace cpu {

// Work units (about one multiply-add over one feature) below which a kernel runs serially: a
// few hundred microseconds of work on one core, so a parallel region is used only where it
// can save more than its start-up and the stall a busy core may add.
constexpr int64_t kParallelWork = int64_t(1) << 22;

// Parts per thread in a region: enough that a thread held up mid-part leaves little behind.
constexpr int64_t kPartsPerThread = 16;

// The number of threads for `work` units: 1 below kParallelWork or inside a parallel region.
inline int64_t threads_for(int64_t work) {
  if (work < kParallelWork || at::in_parallel_region()) return 1;
  return std::max<int64_t>(1, std::min<int64_t>(at::get_num_threads(), work / kParallelWork));
}

// Calls fn(p) once for every part p in [0, parts). With threads > 1, one parallel region whose
// threads claim the next unclaimed part until none is left (dynamic scheduling).
template <typename F>
void parallel_parts(int64_t parts, int64_t threads, const F& fn) {
  if (threads <= 1 || parts <= 1) {
    for (int64_t p = 0; p < parts; ++p) fn(p);
    return;
  }
  std::atomic<int64_t> next{0};
  at::parallel_for(0, std::min(threads, parts), 1, [&](int64_t, int64_t) {
    for (int64_t p = next.fetch_add(1, std::memory_order_relaxed); p < parts;
         p = next.fetch_add(1, std::memory_order_relaxed))
      fn(p);
  });
}

// Calls fn(row_begin, row_end) over [0, rows) split into ranges of about equal work, where a
// row's work is (its edge count plus one) times feature_width. Power-law graphs put most edges
// on few rows, so equal row counts would leave threads idle; several ranges per thread (claimed
// dynamically) absorb what remains uneven. rowptr must have been checked (csr_values.h).
template <typename F>
void parallel_rows(const int64_t* rowptr, int64_t rows, int64_t feature_width, const F& fn) {
  const int64_t work = rowptr[rows] - rowptr[0] + rows;
  const int64_t threads = threads_for(work * std::max<int64_t>(feature_width, 1));
  if (threads <= 1) {
    fn(int64_t(0), rows);
    return;
  }
  const int64_t parts = std::min<int64_t>(rows, threads * kPartsPerThread);
  std::vector<int64_t> split(parts + 1, rows);
  split[0] = 0;
  for (int64_t p = 1; p < parts; ++p) {
    const int64_t target = work * p / parts;
    int64_t lo = split[p - 1], hi = rows;  // first r with rowptr[r] - rowptr[0] + r >= target
    while (lo < hi) {
      const int64_t mid = lo + (hi - lo) / 2;
      if (rowptr[mid] - rowptr[0] + mid < target) lo = mid + 1; else hi = mid;
    }
    split[p] = lo;
  }
  parallel_parts(parts, threads, [&](int64_t p) {
    if (split[p] < split[p + 1]) fn(split[p], split[p + 1]);
  });
}

}  // namespace cpu
}  // namespace gkd
