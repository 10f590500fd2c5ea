// The one place that validates op arguments. Every kernel entry calls these before touching
// data, so a bad call raises a c10::Error (RuntimeError in Python) naming the op, the argument
// and what was expected, instead of reading out of bounds.
#pragma once

#include <ATen/ATen.h>
#include <ATen/OpMathType.h>

#include <cmath>
#include <cstdint>
#include <string>

#include "vocab.h"

namespace gkd {

inline std::string shape_str(const at::Tensor& t) { return c10::str(t.sizes()); }

// The dtype the kernels accumulate in and keep their statistics in (row log-sum-exps, squared
// norms, LSP stats): float32 for float16/bfloat16 inputs, the input dtype otherwise. It is
// at::opmath_type, which the CUDA kernels use as their accumulator type, so host and device agree.
inline at::ScalarType stat_dtype(at::ScalarType t) { return at::toOpMathType(t); }
inline at::ScalarType stat_dtype(const at::Tensor& x) { return stat_dtype(x.scalar_type()); }

// Float32/float64 on CPU; float16 and bfloat16 too on CUDA.
inline void check_float_dtype(const char* op, const char* name, const at::Tensor& x) {
  const auto t = x.scalar_type();
  if (x.is_cuda()) {
    TORCH_CHECK(t == at::kFloat || t == at::kDouble || t == at::kHalf || t == at::kBFloat16, op,
                ": argument '", name, "' must be float16, bfloat16, float32 or float64 on CUDA, got ", t);
  } else {
    TORCH_CHECK(t == at::kFloat || t == at::kDouble, op, ": argument '", name,
                "' must be float32 or float64 on CPU, got ", t);
  }
}

// Index tensors of a CSR structure: rowptr [N_dst + 1], col [E], int64, contiguous, same device.
inline void check_csr(const char* op, const at::Tensor& rowptr, const at::Tensor& col,
                      const char* rowptr_name = "rowptr", const char* col_name = "col") {
  TORCH_CHECK(rowptr.dim() == 1 && rowptr.size(0) >= 1, op, ": argument '", rowptr_name,
              "' must be a 1-D tensor of length N_dst + 1 >= 1, got shape ", shape_str(rowptr));
  TORCH_CHECK(col.dim() == 1, op, ": argument '", col_name, "' must be a 1-D tensor [E], got shape ",
              shape_str(col));
  TORCH_CHECK(rowptr.scalar_type() == at::kLong, op, ": argument '", rowptr_name,
              "' must be int64, got ", rowptr.scalar_type());
  TORCH_CHECK(col.scalar_type() == at::kLong, op, ": argument '", col_name, "' must be int64, got ",
              col.scalar_type());
  TORCH_CHECK(rowptr.is_contiguous() && col.is_contiguous(), op, ": arguments '", rowptr_name,
              "' and '", col_name, "' must be contiguous");
  TORCH_CHECK(col.device() == rowptr.device(), op, ": argument '", col_name, "' is on ",
              col.device(), " but '", rowptr_name, "' is on ", rowptr.device());
}

// ---------------------------------------------------------------- CSR index values
// The checks above read shapes only. Before a kernel walks a CSR, the values of its index tensors
// are checked too (cpu/csr_values.h on the host, cuda/csr_values.cu on the device), so a
// malformed graph is a RuntimeError naming the argument, never an out-of-bounds read or write:
//   rowptr     starts at 0, never decreases, ends at E = len(col);
//   col        every entry in [0, N_src);
//   transpose  t_rowptr as rowptr over the sources; t_col in [0, N_dst); t_perm in [0, E), a
//              permutation, and transposed edge k (in source row j, target t_col[k]) maps to a
//              graph edge e = t_perm[k] with the same endpoints: col[e] = j and
//              rowptr[t_col[k]] <= e < rowptr[t_col[k] + 1].
// A fault is found as (kind, position) packed into one integer, kind in the high byte, so the
// smallest packed value is the fault to report: the first kind in the order below, at its first
// position. Host and device report the same fault for the same input.
enum class CsrFault : int64_t {
  kRowptrStart = 1,  // rowptr[0] != 0
  kRowptrOrder,      // rowptr[pos] > rowptr[pos + 1]
  kRowptrEnd,        // rowptr[N] != E
  kColRange,         // col[pos] outside [0, N_src)
  kTRowptrStart,     // the same three for t_rowptr
  kTRowptrOrder,
  kTRowptrEnd,
  kTColRange,        // t_col[pos] outside [0, N_dst)
  kTPermRange,       // t_perm[pos] outside [0, E)
  kTPermSource,      // col[t_perm[pos]] is not the source row pos lies in
  kTPermTarget,      // t_perm[pos] is not an edge into t_col[pos]
  kTPermRepeat,      // t_perm[pos] occurs at another position too
};

constexpr int64_t kNoFault = INT64_MAX;
constexpr int kFaultShift = 56;  // positions < 2^56

inline constexpr int64_t fault_key(CsrFault kind, int64_t pos) {
  return (static_cast<int64_t>(kind) << kFaultShift) | pos;
}

// The arguments a CSR check names: the forward CSR, and the transpose where one is checked.
struct CsrArgs {
  at::Tensor rowptr, col;
  int64_t num_src;
  const char* src_what;  // what N_src counts, for the message ("the rows of 'x'")
  c10::optional<at::Tensor> t_rowptr, t_col, t_perm;
};

inline int64_t value_at(const at::Tensor& t, int64_t pos) {
  return t.narrow(0, pos, 1).item<int64_t>();  // error path only (a device sync on CUDA)
}

// Throws the RuntimeError for a fault key (one that is not kNoFault), reading the few values it
// quotes from the tensors (on any device).
[[noreturn]] inline void report_csr_fault(const char* op, const CsrArgs& a, int64_t key) {
  const auto kind = static_cast<CsrFault>(key >> kFaultShift);
  const int64_t pos = key & ((int64_t(1) << kFaultShift) - 1);
  const int64_t E = a.col.size(0), n_dst = a.rowptr.size(0) - 1;
  const bool t = kind >= CsrFault::kTRowptrStart;
  const at::Tensor& rp = t ? *a.t_rowptr : a.rowptr;
  const char* rp_name = t ? "t_rowptr" : "rowptr";
  switch (kind) {
    case CsrFault::kRowptrStart:
    case CsrFault::kTRowptrStart:
      TORCH_CHECK(false, op, ": argument '", rp_name, "' must start at 0, got ", rp_name,
                  "[0] = ", value_at(rp, 0));
    case CsrFault::kRowptrOrder:
    case CsrFault::kTRowptrOrder:
      TORCH_CHECK(false, op, ": argument '", rp_name, "' must be non-decreasing, got ", rp_name, "[",
                  pos, "] = ", value_at(rp, pos), " > ", rp_name, "[", pos + 1, "] = ",
                  value_at(rp, pos + 1));
    case CsrFault::kRowptrEnd:
    case CsrFault::kTRowptrEnd:
      TORCH_CHECK(false, op, ": argument '", rp_name, "' must end at E = ", E, " (the length of 'col'), got ",
                  rp_name, "[", pos, "] = ", value_at(rp, pos));
    case CsrFault::kColRange:
      TORCH_CHECK(false, op, ": 'col' holds ", value_at(a.col, pos), " at position ", pos,
                  ", outside [0, ", a.num_src, ") (", a.src_what, ")");
    case CsrFault::kTColRange:
      TORCH_CHECK(false, op, ": 't_col' holds ", value_at(*a.t_col, pos), " at position ", pos,
                  ", outside [0, ", n_dst, ") (N_dst, the length of 'rowptr' minus 1)");
    case CsrFault::kTPermRange:
      TORCH_CHECK(false, op, ": 't_perm' holds ", value_at(*a.t_perm, pos), " at position ", pos,
                  ", outside [0, ", E, ") (E, the length of 'col')");
    case CsrFault::kTPermSource: {
      const int64_t j = at::searchsorted(*a.t_rowptr, pos, false, true).item<int64_t>() - 1;
      const int64_t e = value_at(*a.t_perm, pos);
      TORCH_CHECK(false, op, ": the transpose does not belong to this graph: transposed edge ", pos,
                  " lies in row ", j, " of 't_rowptr' (source ", j, ") but 't_perm' maps it to edge ",
                  e, ", whose source is col[", e, "] = ", value_at(a.col, e));
    }
    case CsrFault::kTPermTarget: {
      const int64_t i = value_at(*a.t_col, pos), e = value_at(*a.t_perm, pos);
      TORCH_CHECK(false, op, ": the transpose does not belong to this graph: transposed edge ", pos,
                  " has target t_col[", pos, "] = ", i, " but 't_perm' maps it to edge ", e,
                  ", which is not among the incoming edges [", value_at(a.rowptr, i), ", ",
                  value_at(a.rowptr, i + 1), ") of node ", i);
    }
    case CsrFault::kTPermRepeat:
      TORCH_CHECK(false, op, ": 't_perm' must be a permutation of [0, E), but it holds ",
                  value_at(*a.t_perm, pos), " at position ", pos, " and at another position too");
  }
  TORCH_CHECK(false, op, ": malformed CSR (fault key ", key, ")");
}

// The transposed CSR (by source) that backward passes traverse, with the permutation that maps
// each transposed position to the edge's position in the forward CSR.
inline void check_transpose(const char* op, const at::Tensor& col, int64_t num_src,
                            const at::Tensor& t_rowptr, const at::Tensor& t_col,
                            const at::Tensor& t_perm) {
  check_csr(op, t_rowptr, t_col, "t_rowptr", "t_col");
  TORCH_CHECK(t_rowptr.size(0) == num_src + 1, op, ": argument 't_rowptr' must have length N_src + 1 = ",
              num_src + 1, ", got ", t_rowptr.size(0));
  TORCH_CHECK(t_col.size(0) == col.size(0) && t_perm.dim() == 1 && t_perm.size(0) == col.size(0), op,
              ": arguments 't_col' and 't_perm' must have E = ", col.size(0), " entries, got ",
              shape_str(t_col), " and ", shape_str(t_perm));
  TORCH_CHECK(t_perm.scalar_type() == at::kLong && t_perm.is_contiguous(), op,
              ": argument 't_perm' must be a contiguous int64 tensor");
  TORCH_CHECK(t_rowptr.device() == col.device() && t_perm.device() == col.device(), op,
              ": the transpose tensors must be on ", col.device());
}

// Everything gkd::check_csr reads: a CSR over num_src sources and, when all three are given,
// its transpose (some but not all of them is an error).
inline CsrArgs check_csr_op(const char* op, const at::Tensor& rowptr, const at::Tensor& col,
                            int64_t num_src, const c10::optional<at::Tensor>& t_rowptr,
                            const c10::optional<at::Tensor>& t_col,
                            const c10::optional<at::Tensor>& t_perm) {
  check_csr(op, rowptr, col);
  TORCH_CHECK(num_src >= 0, op, ": argument 'num_src' must be >= 0, got ", num_src);
  const int given = int(t_rowptr.has_value()) + int(t_col.has_value()) + int(t_perm.has_value());
  TORCH_CHECK(given == 0 || given == 3, op,
              ": arguments 't_rowptr', 't_col' and 't_perm' must be given together (all three or none)");
  const char* what = "N_src, the argument 'num_src'";
  if (given == 0) return {rowptr, col, num_src, what};
  check_transpose(op, col, num_src, *t_rowptr, *t_col, *t_perm);
  return {rowptr, col, num_src, what, t_rowptr, t_col, t_perm};
}

// ---------------------------------------------------------------- neighbour sampling
// gkd::sample_neighbors reads only the rows of the sampled nodes, so it checks those rows as it
// reads them rather than the whole CSR: a fault is (kind, position) packed as for CsrFault, the
// smallest key reported. The first stage (the rows) is checked before any sampling, the second
// (repeats, sampled sources) before anything is returned; host and device report the same.
enum class SampleFault : int64_t {
  kNodeRange = 1,  // nodes[pos] outside [0, N)
  kRowptr,         // the row of nodes[pos] is not 0 <= rowptr[v] <= rowptr[v + 1] <= E
  kNodeRepeat,     // nodes[pos] occurs at an earlier position too
  kColRange,       // col[pos] (a sampled edge's source) outside [0, N)
};

inline constexpr int64_t sample_fault_key(SampleFault kind, int64_t pos) {
  return (static_cast<int64_t>(kind) << kFaultShift) | pos;
}

// Shapes and dtypes of a sampling call; returns N, the node count (the graph is square).
inline int64_t check_sample(const char* op, const at::Tensor& rowptr, const at::Tensor& col,
                            const at::Tensor& nodes, int64_t fanout) {
  check_csr(op, rowptr, col);
  TORCH_CHECK(nodes.dim() == 1 && nodes.scalar_type() == at::kLong && nodes.is_contiguous(), op,
              ": argument 'nodes' must be a contiguous 1-D int64 tensor, got shape ",
              shape_str(nodes), " and dtype ", nodes.scalar_type());
  TORCH_CHECK(nodes.device() == rowptr.device(), op, ": argument 'nodes' is on ", nodes.device(),
              " but the graph is on ", rowptr.device());
  TORCH_CHECK(fanout >= -1, op, ": argument 'fanout' must be >= 0, or -1 for every neighbour, got ",
              fanout);
  return rowptr.size(0) - 1;
}

[[noreturn]] inline void report_sample_fault(const char* op, const at::Tensor& rowptr,
                                             const at::Tensor& col, const at::Tensor& nodes,
                                             int64_t key) {
  const auto kind = static_cast<SampleFault>(key >> kFaultShift);
  const int64_t pos = key & ((int64_t(1) << kFaultShift) - 1);
  const int64_t N = rowptr.size(0) - 1, E = col.size(0);
  switch (kind) {
    case SampleFault::kNodeRange:
      TORCH_CHECK(false, op, ": argument 'nodes' must hold node ids in [0, ", N,
                  ") (N, the length of 'rowptr' minus 1), got nodes[", pos, "] = ", value_at(nodes, pos));
    case SampleFault::kRowptr: {
      const int64_t v = value_at(nodes, pos);
      TORCH_CHECK(false, op, ": argument 'rowptr' is malformed at node ", v, " (nodes[", pos,
                  "]): rowptr[", v, "] = ", value_at(rowptr, v), ", rowptr[", v + 1, "] = ",
                  value_at(rowptr, v + 1), ", expected 0 <= rowptr[v] <= rowptr[v + 1] <= E = ", E);
    }
    case SampleFault::kNodeRepeat:
      TORCH_CHECK(false, op, ": argument 'nodes' must not repeat a node, but nodes[", pos, "] = ",
                  value_at(nodes, pos), " occurs at an earlier position too");
    case SampleFault::kColRange:
      TORCH_CHECK(false, op, ": argument 'col' must hold source ids in [0, ", N,
                  ") (the graph must be square), got col[", pos, "] = ", value_at(col, pos));
  }
  TORCH_CHECK(false, op, ": malformed sampling input (fault key ", key, ")");
}

// A dense node-feature matrix [rows, D] on the device of the graph, in a supported dtype.
inline void check_features(const char* op, const char* name, const at::Tensor& x,
                           const at::Tensor& like_device) {
  TORCH_CHECK(x.dim() == 2, op, ": argument '", name, "' must be a 2-D tensor [N, D], got shape ",
              shape_str(x));
  TORCH_CHECK(x.device() == like_device.device(), op, ": argument '", name, "' is on ", x.device(),
              " but the graph is on ", like_device.device());
  check_float_dtype(op, name, x);
}

inline void check_rows(const char* op, const char* name, const at::Tensor& x, int64_t rows,
                       const char* what) {
  TORCH_CHECK(x.size(0) == rows, op, ": argument '", name, "' must have ", rows, " rows (", what,
              "), got shape ", shape_str(x));
}

inline void check_same_dtype(const char* op, const char* name, const at::Tensor& t,
                             const at::Tensor& ref, const char* ref_name) {
  TORCH_CHECK(t.scalar_type() == ref.scalar_type(), op, ": argument '", name, "' has dtype ",
              t.scalar_type(), " but '", ref_name, "' has dtype ", ref.scalar_type());
}

// Edge values [E] or [E, H] (H heads, D divisible by H). Returns H.
inline int64_t check_edge_values(const char* op, const at::Tensor& value, const at::Tensor& col,
                                 const at::Tensor& x) {
  const int64_t E = col.size(0);
  TORCH_CHECK((value.dim() == 1 || value.dim() == 2) && value.size(0) == E, op,
              ": argument 'value' must have shape [E] or [E, H] with E = ", E, ", got ",
              shape_str(value));
  TORCH_CHECK(value.device() == col.device(), op, ": argument 'value' is on ", value.device(),
              " but the graph is on ", col.device());
  check_same_dtype(op, "value", value, x, "x");
  const int64_t H = value.dim() == 2 ? value.size(1) : 1;
  TORCH_CHECK(H >= 1 && x.size(1) % H == 0, op, ": with ", H, " heads the feature width of 'x' (",
              x.size(1), ") must be divisible by H");
  return H;
}

// Everything gkd::spmm and its backward read: returns H (heads).
inline int64_t check_spmm(const char* op, const at::Tensor& rowptr, const at::Tensor& col,
                          const c10::optional<at::Tensor>& value, const at::Tensor& x) {
  check_csr(op, rowptr, col);
  check_features(op, "x", x, rowptr);
  return value.has_value() ? check_edge_values(op, *value, col, x) : 1;
}

// Gradient or second operand of shape [rows, D] matching 'ref' in dtype and width.
inline void check_like(const char* op, const char* name, const at::Tensor& t, int64_t rows,
                       const at::Tensor& ref, const char* ref_name) {
  check_features(op, name, t, ref);
  check_same_dtype(op, name, t, ref, ref_name);
  TORCH_CHECK(t.size(0) == rows && t.size(1) == ref.size(1), op, ": argument '", name,
              "' must have shape [", rows, ", ", ref.size(1), "], got ", shape_str(t));
}

// Everything gkd::spmm_backward reads. Returns H (heads); sets 'transposed' when the transpose
// tensors were given (the x gradient needs them).
inline int64_t check_spmm_backward(const char* op, const at::Tensor& rowptr, const at::Tensor& col,
                                   const c10::optional<at::Tensor>& value, const at::Tensor& x,
                                   const at::Tensor& grad_out, const at::Tensor& arg, Reduce reduce,
                                   const c10::optional<at::Tensor>& t_rowptr,
                                   const c10::optional<at::Tensor>& t_col,
                                   const c10::optional<at::Tensor>& t_perm, bool need_x,
                                   bool need_value, bool& transposed) {
  const int64_t H = check_spmm(op, rowptr, col, value, x);
  const int64_t rows = rowptr.size(0) - 1, D = x.size(1);
  check_like(op, "grad_out", grad_out, rows, x, "x");
  if (reduce == Reduce::kMax) {
    TORCH_CHECK(arg.scalar_type() == at::kLong && arg.dim() == 2 && arg.size(0) == rows &&
                    arg.size(1) == D && arg.device() == x.device(),
                op, ": argument 'arg' must be the int64 [", rows, ", ", D,
                "] argmax returned by gkd::spmm with reduce='max', got ", shape_str(arg));
  }
  TORCH_CHECK(!need_value || value.has_value(), op, ": need_value=True but no edge values were given");
  transposed = t_rowptr.has_value() && t_col.has_value() && t_perm.has_value();
  TORCH_CHECK(!need_x || transposed, op,
              ": the gradient for 'x' needs the transposed graph (t_rowptr, t_col, t_perm)");
  if (transposed) check_transpose(op, col, x.size(0), *t_rowptr, *t_col, *t_perm);
  return H;
}

// ---------------------------------------------------------------- similarity losses (GSP, G-CRD)

// A node-embedding matrix [n, D] with n >= 1, in a supported floating dtype for its device.
inline void check_embedding(const char* op, const char* name, const at::Tensor& x) {
  TORCH_CHECK(x.dim() == 2, op, ": argument '", name, "' must be a 2-D tensor [n, D], got shape ",
              shape_str(x));
  TORCH_CHECK(x.size(0) >= 1, op, ": argument '", name, "' must have at least one row, got shape ",
              shape_str(x));
  check_float_dtype(op, name, x);
}

// Student and teacher embeddings, same device and dtype; with same_rows of the same n nodes
// (GSP; InfoNCE checks its rows itself), with same_width also the same D (contrastive:
// z_s[i] . z_t[j]); GSP allows D_s != D_t.
inline void check_embedding_pair(const char* op, const at::Tensor& s, const char* s_name,
                                 const at::Tensor& t, const char* t_name, bool same_width,
                                 bool same_rows = true) {
  check_embedding(op, s_name, s);
  check_embedding(op, t_name, t);
  TORCH_CHECK(t.device() == s.device(), op, ": argument '", t_name, "' is on ", t.device(), " but '",
              s_name, "' is on ", s.device());
  check_same_dtype(op, t_name, t, s, s_name);
  TORCH_CHECK(!same_rows || t.size(0) == s.size(0), op, ": arguments '", s_name, "' and '", t_name,
              "' must have the same number of rows n, got ", shape_str(s), " and ", shape_str(t));
  TORCH_CHECK(!same_width || t.size(1) == s.size(1), op, ": arguments '", s_name, "' and '", t_name,
              "' must have the same width D, got ", shape_str(s), " and ", shape_str(t));
}

inline void check_positive(const char* op, const char* name, double v) {
  TORCH_CHECK(v > 0 && std::isfinite(v), op, ": argument '", name,
              "' must be a finite number > 0, got ", v);
}

// A per-row statistic (log-sum-exp, squared norm) [n] on the device of 'like', in 'dtype'.
inline void check_row_stat(const char* op, const char* name, const at::Tensor& v, int64_t n,
                           const at::Tensor& like, at::ScalarType dtype) {
  TORCH_CHECK(v.dim() == 1 && v.size(0) == n, op, ": argument '", name, "' must have shape [", n,
              "], got ", shape_str(v));
  TORCH_CHECK(v.device() == like.device(), op, ": argument '", name, "' is on ", v.device(),
              " but the embeddings are on ", like.device());
  TORCH_CHECK(v.scalar_type() == dtype, op, ": argument '", name, "' must be ", dtype, ", got ",
              v.scalar_type());
}

// The upstream gradient of a scalar loss.
inline void check_scalar_grad(const char* op, const at::Tensor& g, const at::Tensor& like) {
  TORCH_CHECK(g.numel() == 1, op, ": argument 'grad' must be the gradient of a scalar loss (one "
              "element), got shape ", shape_str(g));
  TORCH_CHECK(g.device() == like.device(), op, ": argument 'grad' is on ", g.device(),
              " but the embeddings are on ", like.device());
}

// Everything gkd::infonce and its backward read: anchors z_s [n, D] and candidates z_t [m, D]
// alike, m >= n (the first n are the anchors' positives, the rest extra negatives) and m == n
// when symmetric (the teacher-anchored direction needs a positive for every candidate),
// temperature > 0, and the precision: 'ieee' (exact fp32/fp64 products) anywhere, 'tf32' or
// 'bf16' (tensor-core tile products) on CUDA for float32/float16/bfloat16 inputs.
inline Precision check_infonce(const char* op, const at::Tensor& z_s, const at::Tensor& z_t,
                               double temperature, bool symmetric, c10::string_view precision) {
  check_embedding_pair(op, z_s, "z_s", z_t, "z_t", true, false);
  const int64_t n = z_s.size(0), m = z_t.size(0);
  TORCH_CHECK(m >= n, op, ": argument 'z_t' must have at least n = ", n,
              " rows (rows 0..n-1 are the positives of the n anchors of 'z_s', further rows extra "
              "negatives), got shape ", shape_str(z_t));
  TORCH_CHECK(!symmetric || m == n, op, ": with symmetric=True argument 'z_t' must have exactly n = ",
              n, " rows like 'z_s' (the teacher-anchored direction has no positive for an extra "
              "candidate), got shape ", shape_str(z_t));
  check_positive(op, "temperature", temperature);
  const Precision p = parse_precision(op, precision);
  TORCH_CHECK(p == Precision::kIeee || z_s.is_cuda(), op, ": argument 'precision'='",
              std::string(precision), "' needs CUDA tensor cores; on CPU only 'ieee' is supported");
  TORCH_CHECK(p == Precision::kIeee || z_s.scalar_type() != at::kDouble, op,
              ": argument 'precision'='", std::string(precision),
              "' needs float32/float16/bfloat16 inputs, got float64");
  return p;
}

// ... and what gkd::infonce_backward reads beyond that: the loss gradient and the log-sum-exps
// gkd::infonce returned: lse_s [n], and lse_t [n] when symmetric (m == n then).
inline Precision check_infonce_backward(const char* op, const at::Tensor& grad,
                                        const at::Tensor& z_s, const at::Tensor& z_t,
                                        const at::Tensor& lse_s, const at::Tensor& lse_t,
                                        double temperature, bool symmetric,
                                        c10::string_view precision) {
  const Precision p = check_infonce(op, z_s, z_t, temperature, symmetric, precision);
  const int64_t n = z_s.size(0);
  check_scalar_grad(op, grad, z_s);
  check_row_stat(op, "lse_s", lse_s, n, z_s, stat_dtype(z_s));
  if (symmetric) check_row_stat(op, "lse_t", lse_t, n, z_s, stat_dtype(z_s));
  return p;
}

// Everything gkd::gsp reads: h_s [n, D_s] and h_t [n, D_t] of one dtype, and gamma > 0 for rbf
// (the other kernels ignore it).
inline GspKernel check_gsp(const char* op, const at::Tensor& h_s, const at::Tensor& h_t,
                           c10::string_view kernel_name, double gamma) {
  check_embedding_pair(op, h_s, "h_s", h_t, "h_t", false);
  const GspKernel kernel = parse_gsp_kernel(op, kernel_name);
  if (param_name(kernel) != nullptr) check_positive(op, param_name(kernel), gamma);
  return kernel;
}

// ... and what gkd::gsp_backward reads beyond that: the loss gradient and the squared row norms
// gkd::gsp returned.
inline GspKernel check_gsp_backward(const char* op, const at::Tensor& grad, const at::Tensor& h_s,
                                    const at::Tensor& h_t, const at::Tensor& sq_s,
                                    const at::Tensor& sq_t, c10::string_view kernel_name,
                                    double gamma) {
  const GspKernel kernel = check_gsp(op, h_s, h_t, kernel_name, gamma);
  const int64_t n = h_s.size(0);
  check_scalar_grad(op, grad, h_s);
  check_row_stat(op, "sq_s", sq_s, n, h_s, stat_dtype(h_s));
  check_row_stat(op, "sq_t", sq_t, n, h_s, stat_dtype(h_s));
  return kernel;
}

// Everything gkd::lsp and its backward read. The op is defined on square graphs only: a node
// is both a destination (its row) and a source (its column), so h_s and h_t need N = N_dst
// rows. 'param' is the kernel's parameter (gamma, sigma) where it takes one.
inline LspKernel check_lsp(const char* op, const at::Tensor& rowptr, const at::Tensor& col,
                           const at::Tensor& h_s, const at::Tensor& h_t, c10::string_view kernel_name,
                           double param) {
  check_csr(op, rowptr, col);
  check_features(op, "h_s", h_s, rowptr);
  check_features(op, "h_t", h_t, rowptr);
  check_same_dtype(op, "h_t", h_t, h_s, "h_s");
  const int64_t n = rowptr.size(0) - 1;
  TORCH_CHECK(h_s.size(0) == n && h_t.size(0) == n, op,
              ": only square graphs are supported: 'h_s' and 'h_t' must both have N = N_dst = ",
              n, " rows, got ", shape_str(h_s), " and ", shape_str(h_t));
  const LspKernel kernel = parse_lsp_kernel(op, kernel_name);
  const char* name = param_name(kernel);
  TORCH_CHECK(name == nullptr || (std::isfinite(param) && param > 0), op, ": argument 'param' (",
              name, " of the ", std::string(kernel_name), " kernel) must be a finite number > 0, got ",
              param);
  return kernel;
}

// The saved statistics and incoming gradient of gkd::lsp_backward: stats [N, 3] in the
// statistics dtype, grad_kl [N] like h_s.
inline void check_lsp_backward(const char* op, const at::Tensor& stats,
                               const at::Tensor& edge_logits, const at::Tensor& grad_kl,
                               const at::Tensor& h_s, int64_t n, int64_t E) {
  const auto acc = stat_dtype(h_s);
  TORCH_CHECK(stats.dim() == 2 && stats.size(0) == n && stats.size(1) == 3 &&
                  stats.scalar_type() == acc && stats.device() == h_s.device(),
              op, ": argument 'stats' must be the ", acc, " [", n, ", 3] tensor returned by gkd::lsp on ",
              h_s.device(), ", got ", stats.scalar_type(), " ", shape_str(stats), " on ", stats.device());
  TORCH_CHECK(edge_logits.dim() == 2 && edge_logits.size(0) == E && edge_logits.size(1) == 2 &&
                  edge_logits.scalar_type() == acc && edge_logits.device() == h_s.device(),
              op, ": argument 'edge_logits' must be the ", acc, " [", E, ", 2] tensor returned by "
              "gkd::lsp on ", h_s.device(), ", got ", edge_logits.scalar_type(), " ",
              shape_str(edge_logits), " on ", edge_logits.device());
  TORCH_CHECK(grad_kl.dim() == 1 && grad_kl.size(0) == n && grad_kl.device() == h_s.device(), op,
              ": argument 'grad_kl' must have shape [", n, "] on ", h_s.device(), ", got ",
              shape_str(grad_kl), " on ", grad_kl.device());
  check_same_dtype(op, "grad_kl", grad_kl, h_s, "h_s");
}

// Everything gkd::lsp_backward reads beyond gkd::lsp's inputs, the transpose included.
inline void check_lsp_backward_all(const char* op, const at::Tensor& col, const at::Tensor& stats,
                                   const at::Tensor& edge_logits, const at::Tensor& grad_kl,
                                   const at::Tensor& h_s, int64_t n,
                                   const c10::optional<at::Tensor>& t_rowptr,
                                   const c10::optional<at::Tensor>& t_col,
                                   const c10::optional<at::Tensor>& t_perm, bool need_grad) {
  check_lsp_backward(op, stats, edge_logits, grad_kl, h_s, n, col.size(0));
  const bool transposed = t_rowptr.has_value() && t_col.has_value() && t_perm.has_value();
  TORCH_CHECK(!need_grad || transposed, op,
              ": the gradients need the transposed graph (t_rowptr, t_col, t_perm)");
  if (transposed) check_transpose(op, col, n, *t_rowptr, *t_col, *t_perm);
}

// Everything gkd::sddmm reads: a [N_dst, D] and b [N_src, D] of one dtype, heads dividing D.
inline void check_sddmm(const char* op, const at::Tensor& rowptr, const at::Tensor& col,
                        const at::Tensor& a, const at::Tensor& b, int64_t heads) {
  check_csr(op, rowptr, col);
  check_features(op, "a", a, rowptr);
  check_rows(op, "a", a, rowptr.size(0) - 1, "one per destination node");
  check_features(op, "b", b, rowptr);
  check_same_dtype(op, "b", b, a, "a");
  TORCH_CHECK(b.size(1) == a.size(1), op, ": arguments 'a' and 'b' must have the same width, got ",
              shape_str(a), " and ", shape_str(b));
  TORCH_CHECK(heads >= 1 && a.size(1) % heads == 0, op,
              ": argument 'heads' must be >= 1 and divide D = ", a.size(1), ", got ", heads);
}

// check_sddmm, then the shapes of the transpose when all three tensors are given (sddmm's
// gradient for 'b' walks it); returns what the value checks read.
inline CsrArgs sddmm_csr_args(const char* op, const at::Tensor& rowptr, const at::Tensor& col,
                              const at::Tensor& a, const at::Tensor& b, int64_t heads,
                              const c10::optional<at::Tensor>& t_rowptr,
                              const c10::optional<at::Tensor>& t_col,
                              const c10::optional<at::Tensor>& t_perm) {
  check_sddmm(op, rowptr, col, a, b, heads);
  const char* what = "N_src, the rows of 'b'";
  if (!(t_rowptr.has_value() && t_col.has_value() && t_perm.has_value()))
    return {rowptr, col, b.size(0), what};
  check_transpose(op, col, b.size(0), *t_rowptr, *t_col, *t_perm);
  return {rowptr, col, b.size(0), what, t_rowptr, t_col, t_perm};
}

}  // namespace gkd
