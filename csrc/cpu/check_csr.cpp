// CPU kernel of gkd::check_csr: the CSR value checks every CSR-walking kernel runs first
// (csr_values.h), on their own, for users and for the benchmarks that report their cost.
#include <ATen/ATen.h>
#include <torch/library.h>

#include "../checks.h"
#include "csr_values.h"

namespace gkd {
namespace cpu {
namespace {

void check_csr_cpu(const at::Tensor& rowptr, const at::Tensor& col, int64_t num_src,
                   const c10::optional<at::Tensor>& t_rowptr, const c10::optional<at::Tensor>& t_col,
                   const c10::optional<at::Tensor>& t_perm) {
  const char* op = "gkd::check_csr";
  check_csr_values(op, check_csr_op(op, rowptr, col, num_src, t_rowptr, t_col, t_perm));
}

}  // namespace

TORCH_LIBRARY_IMPL(gkd, CPU, m) {
  m.impl("check_csr", &check_csr_cpu);
}

}  // namespace cpu
}  // namespace gkd
