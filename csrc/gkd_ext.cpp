// Every op schema of gkd_ext, in one block. Kernels register through TORCH_LIBRARY_IMPL in
// csrc/cpu/<op>.cpp and csrc/cuda/<op>.cu; Python adds fake kernels and autograd (_ops.py).
#include <torch/library.h>

TORCH_LIBRARY(gkd, m) {
  // out[i] = reduce_{e=(j->i)} value[e] * x[j]. Returns (out [N_dst, D], arg): arg holds, for
  // reduce='max', the CSR position of the winning edge per output element (E where a row is
  // empty) and is empty otherwise. t_* is the transposed CSR the backward needs for x; the
  // forward does not read it.
  m.def("spmm(Tensor rowptr, Tensor col, Tensor? value, Tensor x, str reduce, "
        "Tensor? t_rowptr=None, Tensor? t_col=None, Tensor? t_perm=None) -> (Tensor, Tensor)");
  // Gradients of spmm for x (needs t_*) and for value; a gradient not asked for is returned
  // as an empty tensor. Deterministic: no atomics.
  m.def("spmm_backward(Tensor rowptr, Tensor col, Tensor? value, Tensor x, Tensor grad_out, "
        "Tensor arg, str reduce, Tensor? t_rowptr, Tensor? t_col, Tensor? t_perm, "
        "bool need_x, bool need_value) -> (Tensor, Tensor)");
  // out[e, h] = <a[i, h, :], b[j, h, :]> for every edge e=(j->i) and head h: a [N_dst, D],
  // b [N_src, D], D divisible by heads. Output [E, heads].
  m.def("sddmm(Tensor rowptr, Tensor col, Tensor a, Tensor b, int heads=1, "
        "Tensor? t_rowptr=None, Tensor? t_col=None, Tensor? t_perm=None) -> Tensor");
}
