// The string arguments of the ops, parsed once at each kernel entry into one enum class per
// family; the C++ side of gkd_ext/kernels.py (tests/test_kernels.py checks that both accept the
// same names). Each family's names sit in one table of {name, enumerator} pairs beside its enum,
// so no order has to match anything, and a bad value is reported with the argument's name and
// every valid name.
#pragma once

#include <c10/util/Exception.h>
#include <c10/util/string_view.h>

#include <cstddef>
#include <string>

namespace gkd {

template <typename E>
struct Choice {
  const char* name;
  E value;
};

template <typename E, std::size_t N>
E parse_choice(const char* op, const char* arg, c10::string_view value,
               const Choice<E> (&choices)[N]) {
  for (const Choice<E>& c : choices)
    if (value == c.name) return c.value;
  std::string valid;
  for (std::size_t i = 0; i < N; ++i) valid += (i ? ", '" : "'") + std::string(choices[i].name) + "'";
  TORCH_CHECK(false, op, ": argument '", arg, "' must be one of ", valid, ", got '",
              std::string(value), "'");
  return choices[0].value;  // not reached
}

// gkd::spmm: how the messages arriving at a node are combined.
enum class Reduce { kSum, kMean, kMax };

inline Reduce parse_reduce(const char* op, c10::string_view reduce) {
  static constexpr Choice<Reduce> kChoices[] = {
      {"sum", Reduce::kSum}, {"mean", Reduce::kMean}, {"max", Reduce::kMax}};
  return parse_choice(op, "reduce", reduce, kChoices);
}

// gkd::infonce: the tile products, exact ('ieee') or on CUDA tensor cores.
enum class Precision { kIeee, kTf32, kBf16 };

inline Precision parse_precision(const char* op, c10::string_view precision) {
  static constexpr Choice<Precision> kChoices[] = {
      {"ieee", Precision::kIeee}, {"tf32", Precision::kTf32}, {"bf16", Precision::kBf16}};
  return parse_choice(op, "precision", precision, kChoices);
}

// gkd::gsp: the kernel of the n x n similarity matrices; rbf takes gamma.
enum class GspKernel { kCosine, kPoly, kL2, kRbf };

inline GspKernel parse_gsp_kernel(const char* op, c10::string_view kernel) {
  static constexpr Choice<GspKernel> kChoices[] = {
      {"rbf", GspKernel::kRbf}, {"cosine", GspKernel::kCosine},
      {"poly", GspKernel::kPoly}, {"l2", GspKernel::kL2}};
  return parse_choice(op, "kernel", kernel, kChoices);
}

// The name of the kernel's parameter, nullptr for a kernel without one.
inline const char* param_name(GspKernel kernel) {
  return kernel == GspKernel::kRbf ? "gamma" : nullptr;
}

// cosine and poly compare unit rows (their Gram matrix is the cosine); l2 and rbf compare squared
// distances |a|^2 + |b|^2 - 2 a.b of the rows centred on their mean (similarity.h: gsp_base).
// constexpr, so device code may call it too.
constexpr bool gsp_normalized(GspKernel kernel) {
  return kernel == GspKernel::kCosine || kernel == GspKernel::kPoly;
}

// gkd::lsp: the kernel of the edge logits (lsp_math.h); rbf takes gamma, laplacian sigma,
// passed as the op's 'param'.
enum class LspKernel { kRbf, kLaplacian, kCosine, kPoly, kL2, kLinear };

inline LspKernel parse_lsp_kernel(const char* op, c10::string_view kernel) {
  static constexpr Choice<LspKernel> kChoices[] = {
      {"rbf", LspKernel::kRbf}, {"laplacian", LspKernel::kLaplacian},
      {"cosine", LspKernel::kCosine}, {"poly", LspKernel::kPoly},
      {"l2", LspKernel::kL2}, {"linear", LspKernel::kLinear}};
  return parse_choice(op, "kernel", kernel, kChoices);
}

// The name of the kernel's parameter (the op's 'param'), nullptr for a kernel without one.
inline const char* param_name(LspKernel kernel) {
  switch (kernel) {
    case LspKernel::kRbf: return "gamma";
    case LspKernel::kLaplacian: return "sigma";
    default: return nullptr;
  }
}

}  // namespace gkd
