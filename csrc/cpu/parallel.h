// Work partitioning shared by the CPU kernels that walk CSR rows.
#pragma once

#include <ATen/Parallel.h>

#include <algorithm>
#include <vector>

namespace gkd {
namespace cpu {

// Calls fn(row_begin, row_end) over [0, rows) split into ranges of about equal work, where a
// row's work is its edge count plus one. Power-law graphs put most edges on few rows, so equal
// row counts would leave threads idle; several ranges per thread absorb what remains uneven.
template <typename F>
void parallel_rows(const int64_t* rowptr, int64_t rows, int64_t feature_width, const F& fn) {
  const int64_t work = rowptr[rows] - rowptr[0] + rows;
  const int64_t threads = at::get_num_threads();
  if (threads <= 1 || work * std::max<int64_t>(feature_width, 1) < 32768) {
    fn(int64_t(0), rows);
    return;
  }
  const int64_t parts = std::min<int64_t>(rows, threads * 8);
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
  at::parallel_for(0, parts, 1, [&](int64_t begin, int64_t end) {
    for (int64_t p = begin; p < end; ++p)
      if (split[p] < split[p + 1]) fn(split[p], split[p + 1]);
  });
}

}  // namespace cpu
}  // namespace gkd
