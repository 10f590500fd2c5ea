// CPU kernel of gkd::sample_neighbors (csrc/gkd_ext.cpp has the contract, sample_math.h the
// per-row sampling both backends share).
//
// Three passes: the rows' edge counts (serial, O(n), checking each row it reads); the sampled
// positions of every row (rows in parallel when the work is large, each written only by its own
// part); the relabelling of sampled sources to local ids in order of first appearance (serial,
// an open-addressing table sized by the sample, so the cost is O(n + E') however large the
// graph is).
#include <ATen/ATen.h>
#include <torch/library.h>

#include <algorithm>
#include <tuple>
#include <vector>

#include "../checks.h"
#include "../sample_math.h"
#include "parallel.h"

namespace gkd {
namespace cpu {
namespace {

// Global id -> local id, for the ids of one sample.
class IdTable {
 public:
  explicit IdTable(int64_t expected) {
    int64_t cap = 16;
    while (cap < 2 * expected) cap *= 2;
    keys_.assign(cap, -1);
    vals_.resize(cap);
    mask_ = cap - 1;
  }
  // The local id of `key`, inserting `fresh` when it is new; `inserted` tells which.
  int64_t find_or_insert(int64_t key, int64_t fresh, bool& inserted) {
    int64_t s = static_cast<int64_t>(mix64(static_cast<uint64_t>(key)) & mask_);
    while (keys_[s] != -1) {
      if (keys_[s] == key) {
        inserted = false;
        return vals_[s];
      }
      s = (s + 1) & mask_;
    }
    keys_[s] = key;
    vals_[s] = fresh;
    inserted = true;
    return fresh;
  }

 private:
  std::vector<int64_t> keys_, vals_;
  uint64_t mask_;
};

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> sample_neighbors_cpu(
    const at::Tensor& rowptr, const at::Tensor& col, const at::Tensor& nodes, int64_t fanout,
    bool replace, int64_t seed) {
  const char* op = "gkd::sample_neighbors";
  const int64_t N = check_sample(op, rowptr, col, nodes, fanout);
  const int64_t n = nodes.size(0), E = col.size(0);
  const int64_t* rp = rowptr.data_ptr<int64_t>();
  const int64_t* cl = col.data_ptr<int64_t>();
  const int64_t* nd = nodes.data_ptr<int64_t>();

  at::Tensor out_rowptr = at::empty({n + 1}, rowptr.options());
  int64_t* orp = out_rowptr.data_ptr<int64_t>();
  orp[0] = 0;
  int64_t fault = kNoFault;
  for (int64_t i = 0; i < n; ++i) {
    const int64_t v = nd[i];
    int64_t count = 0;
    if (v < 0 || v >= N) {
      fault = std::min(fault, sample_fault_key(SampleFault::kNodeRange, i));
    } else if (!(0 <= rp[v] && rp[v] <= rp[v + 1] && rp[v + 1] <= E)) {
      fault = std::min(fault, sample_fault_key(SampleFault::kRowptr, i));
    } else {
      count = sample_count(rp[v + 1] - rp[v], fanout, replace);
    }
    orp[i + 1] = orp[i] + count;
  }
  if (fault != kNoFault) report_sample_fault(op, rowptr, col, nodes, fault);

  const int64_t sampled = orp[n];
  at::Tensor edge_ids = at::empty({sampled}, col.options());
  int64_t* eid = edge_ids.data_ptr<int64_t>();
  const uint64_t useed = static_cast<uint64_t>(seed);
  // A row costs about count^2 steps without replacement (Floyd's membership tests).
  const int64_t width = fanout > 0 ? std::min<int64_t>(fanout, 64) : 1;
  parallel_rows(orp, n, width, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      const int64_t v = nd[i], first = rp[v];
      int64_t* out = eid + orp[i];
      sample_row(useed, v, rp[v + 1] - first, orp[i + 1] - orp[i], replace, out);
      for (int64_t q = 0; q < orp[i + 1] - orp[i]; ++q) out[q] += first;
    }
  });

  at::Tensor out_col = at::empty({sampled}, col.options());
  int64_t* oc = out_col.data_ptr<int64_t>();
  IdTable table(n + sampled);
  std::vector<int64_t> src(nd, nd + n);
  bool inserted = false;
  for (int64_t i = 0; i < n && fault == kNoFault; ++i) {
    table.find_or_insert(nd[i], i, inserted);
    if (!inserted) fault = sample_fault_key(SampleFault::kNodeRepeat, i);
  }
  for (int64_t p = 0; p < sampled; ++p) {
    const int64_t u = cl[eid[p]];
    if (u < 0 || u >= N) {
      fault = std::min(fault, sample_fault_key(SampleFault::kColRange, eid[p]));
      continue;
    }
    if (fault != kNoFault) continue;
    oc[p] = table.find_or_insert(u, static_cast<int64_t>(src.size()), inserted);
    if (inserted) src.push_back(u);
  }
  if (fault != kNoFault) report_sample_fault(op, rowptr, col, nodes, fault);
  at::Tensor src_nodes = at::empty({static_cast<int64_t>(src.size())}, nodes.options());
  std::copy(src.begin(), src.end(), src_nodes.data_ptr<int64_t>());
  return {out_rowptr, out_col, src_nodes, edge_ids};
}

}  // namespace

TORCH_LIBRARY_IMPL(gkd, CPU, m) {
  m.impl("sample_neighbors", &sample_neighbors_cpu);
}

}  // namespace cpu
}  // namespace gkd
