// Device-independent parts of the tiled similarity losses (InfoNCE, GSP): the O(n·D) pre- and
// post-processing around the O(n²·D) tile loops, written with ATen ops so the CPU and CUDA
// kernels share one definition of the math. Nothing here forms an n×n tensor.
#pragma once

#include <ATen/ATen.h>

#include "checks.h"

namespace gkd {

// ---------------------------------------------------------------- InfoNCE

// S_ii = z_s[i] . z_t[i] / tau, in the statistics dtype. z_t may have m >= n rows: the
// positives are its first n.
inline at::Tensor infonce_diag(const at::Tensor& zs, const at::Tensor& zt, double tau) {
  return (zs * zt.narrow(0, 0, zs.size(0))).sum(1).div_(tau);
}

// loss = mean_i (lse_s[i] - S_ii) [+ mean_j (lse_t[j] - S_jj), halved].
inline at::Tensor infonce_loss(const at::Tensor& lse_s, const at::Tensor& lse_t,
                               const at::Tensor& diag, bool symmetric) {
  at::Tensor loss = (lse_s - diag).mean();
  if (symmetric) loss = (loss + (lse_t - diag).mean()).mul_(0.5);
  return loss;
}

// With G = dL/dS the kernels return A = sum_j G'_ij z_t[j] and B = sum_i G'_ij z_s[i] for the
// off-diagonal-free part G' = c·(P [+ Q]) (P row-, Q column-softmax of S), c = 1/n or 1/(2n).
// The -c·k·I part of G (k = 1 or 2 directions) only touches the diagonal: add it here, then
// apply 1/tau (S = z_s z_t^T / tau) and the upstream gradient. With m > n candidates S is
// n x m and its diagonal S_ii (i < n) lies in the first n columns: 'other' holds the n rows
// paired with the first n rows of acc (acc [m, D] for z_t: its extra rows get no such term).
inline at::Tensor infonce_finish(at::Tensor acc, const at::Tensor& other, double c_k,
                                 double inv_tau, const at::Tensor& grad, const at::Tensor& like) {
  acc.narrow(0, 0, other.size(0)).sub_(other.to(acc.scalar_type()), c_k);
  acc.mul_(grad.to(acc.scalar_type()).mul(inv_tau));
  return acc.to(like.scalar_type());
}

// ---------------------------------------------------------------- GSP

// What a model's tiles are built from, in the statistics dtype, contiguous: the rows of h for
// cosine/poly; for l2/rbf the rows minus their column mean. Distances do not change under a
// common shift, but |a|² + |b|² - 2a.b does lose to rounding what a common offset adds to the
// norms (rows near 1000 ± 0.05 in float32 keep about one significant digit of their squared
// distances); centred rows keep the norms as small as the spread of the rows allows.
inline at::Tensor gsp_base(const at::Tensor& h, GspKernel kernel) {
  at::Tensor x = h.to(stat_dtype(h));
  if (!gsp_normalized(kernel)) x = x - x.mean(0, true);
  return x.contiguous();
}

// Squared row norms of gsp_base's rows (statistics dtype): what gkd::gsp returns as sq_s, sq_t.
inline at::Tensor row_sq(const at::Tensor& base) { return (base * base).sum(1); }

// The rows whose Gram matrix the tiles compute: unit rows for cosine/poly (as F.normalize, eps
// 1e-12 on the norm), gsp_base's rows for l2/rbf. Contiguous, statistics dtype.
inline at::Tensor gsp_rows(const at::Tensor& base, const at::Tensor& sq, GspKernel kernel) {
  if (!gsp_normalized(kernel)) return base;
  return (base / sq.sqrt().clamp_min(1e-12).unsqueeze(1)).contiguous();
}

// From M = W'X and r = rowsum(W') (W' = dL/dGram for cosine/poly, dL/dd² for l2/rbf, both
// symmetric, already scaled) to dL/dh:
//   cosine/poly: dL/dX = 2 M, then back through x = h / max(|h|, eps);
//   l2/rbf: d²_ab = |x_a|² + |x_b|² - 2 x_a.x_b (x the centred rows) gives
//   dL/dx_a = 4 (r_a x_a - M_a), and dL/dh = dL/dx minus its column mean (the centring's
//   Jacobian; the mean is zero up to rounding, since W' is symmetric).
inline at::Tensor gsp_finish(const at::Tensor& h, const at::Tensor& x, const at::Tensor& sq,
                             const at::Tensor& M, const at::Tensor& r, GspKernel kernel,
                             const at::Tensor& scale) {
  at::Tensor g;
  if (gsp_normalized(kernel)) {
    const at::Tensor dx = M * 2;
    const at::Tensor norm = sq.sqrt();
    const at::Tensor denom = norm.clamp_min(1e-12).unsqueeze(1);
    // Below eps the normalisation divides by the constant eps: no projection term.
    const at::Tensor proj = (x * dx).sum(1, true) * (norm > 1e-12).unsqueeze(1).to(x.scalar_type());
    g = (dx - x * proj) / denom;
  } else {
    g = (x * r.unsqueeze(1) - M) * 4;
    g = g - g.mean(0, true);
  }
  g.mul_(scale.to(g.scalar_type()));
  return g.to(h.scalar_type());
}

}  // namespace gkd
