// gkd::build_info: what this build of gkd_ext registered, for gkd_ext.info and
// gkd_ext.functional.has_cuda_kernels. It reads the dispatcher rather than a build flag, so the
// CPU-only and the CUDA build run the same code: the CUDA kernels are there exactly when the
// csrc/cuda/*.cu files were compiled in and registered them.
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/library.h>

#include <algorithm>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

namespace gkd {
namespace {

// The dispatch keys reported per op: the backends, the fake (Meta) kernel and autograd that
// gkd_ext/_ops.py registers, and the composite keys an op without a backend kernel uses.
constexpr c10::DispatchKey kReported[] = {
    c10::DispatchKey::CPU,      c10::DispatchKey::CUDA,
    c10::DispatchKey::Meta,     c10::DispatchKey::Autograd,
    c10::DispatchKey::CompositeExplicitAutograd, c10::DispatchKey::CompositeImplicitAutograd};

std::tuple<bool, std::vector<std::string>, std::vector<std::string>> build_info() {
  const std::string ns = "gkd::";
  auto& dispatcher = c10::Dispatcher::singleton();
  std::vector<std::pair<std::string, std::string>> rows;
  bool cuda = false;
  for (const c10::OperatorName& name : dispatcher.getAllOpNames()) {
    if (name.name.compare(0, ns.size(), ns) != 0) continue;
    const auto op = dispatcher.findOp(name);
    if (!op.has_value() || !op->hasSchema()) continue;
    std::string keys;
    for (const c10::DispatchKey key : kReported) {
      if (!op->hasKernelForDispatchKey(key)) continue;
      keys += (keys.empty() ? "" : ",") + std::string(c10::toString(key));
    }
    cuda = cuda || op->hasKernelForDispatchKey(c10::DispatchKey::CUDA);
    std::string op_name = name.name.substr(ns.size());
    if (!name.overload_name.empty()) op_name += "." + name.overload_name;
    rows.emplace_back(std::move(op_name), std::move(keys));
  }
  std::sort(rows.begin(), rows.end());
  std::vector<std::string> ops, keys;
  for (auto& row : rows) {
    ops.push_back(std::move(row.first));
    keys.push_back(std::move(row.second));
  }
  return {cuda, ops, keys};
}

}  // namespace

TORCH_LIBRARY_IMPL(gkd, CompositeExplicitAutograd, m) {
  m.impl("build_info", &build_info);
}

}  // namespace gkd
