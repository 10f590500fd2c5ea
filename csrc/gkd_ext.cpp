// Every op schema of gkd_ext, in one block. Kernels register through TORCH_LIBRARY_IMPL in
// csrc/cpu/<op>.cpp and csrc/cuda/<op>.cu; Python adds fake kernels and autograd (_ops.py).
#include <Python.h>
#include <torch/library.h>

// An importable, empty Python module: importing gkd_ext._C runs the static registrations below
// and in the kernel files. No pybind11 needed, which keeps compile times short.
extern "C" PyObject* PyInit__C(void) {
  static struct PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, nullptr};
  return PyModule_Create(&module_def);
}

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
  // LSP loss per destination node: for every edge j->i the kernel logits l_ij = k(h[i], h[j])
  // of student and teacher, P_i = softmax over i's incoming edges, kl[i] = KL(P^t_i || P^s_i)
  // (0 for a node without incoming edges). Square graphs only. kernel: rbf (param = gamma),
  // laplacian (param = sigma), cosine, poly, l2, linear (param unused). Returns (kl [N] in
  // h_s's dtype, stats [N, 3] = (lse_s, lse_t, kl) in float32, float64 for float64 inputs):
  // the row log-sum-exps the backward recomputes the softmax from. t_* as for spmm.
  m.def("lsp(Tensor rowptr, Tensor col, Tensor h_s, Tensor h_t, str kernel, float param, "
        "Tensor? t_rowptr=None, Tensor? t_col=None, Tensor? t_perm=None) -> (Tensor, Tensor)");
  // Gradients of sum_i grad_kl[i] * kl[i] for h_s and h_t (need_s / need_t; a gradient not
  // asked for is an empty tensor). Walks the transposed CSR for the source side: no atomics.
  m.def("lsp_backward(Tensor rowptr, Tensor col, Tensor h_s, Tensor h_t, Tensor stats, "
        "Tensor grad_kl, str kernel, float param, Tensor? t_rowptr, Tensor? t_col, "
        "Tensor? t_perm, bool need_s, bool need_t) -> (Tensor, Tensor)");
}
