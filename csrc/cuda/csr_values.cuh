// The CUDA side of the CSR value checks (checks.h lists them), defined in check_csr.cu.
#pragma once

#include "../checks.h"

namespace gkd {
namespace cuda {

// Checks the forward CSR (and the transpose when a.t_rowptr is set) on the device: kernels
// record the smallest fault key (checks.h) in a device word by atomicMin, reading only in-bounds
// positions. The key is then copied to the host, a sync before the op's own kernels are
// launched, so they never see a malformed graph, and a fault is thrown as the RuntimeError the
// CPU raises for the same input. While the stream is being captured into a CUDA graph, where no
// sync is allowed, a fault stops the device with a device-side assert instead.
void check_csr_values_cuda(const char* op, const CsrArgs& a);

}  // namespace cuda
}  // namespace gkd
