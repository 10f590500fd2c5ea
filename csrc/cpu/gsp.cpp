// CPU kernels of gkd::gsp and gkd::gsp_backward (tiled global structure preserving loss).
//
// Parallel mapping: rows are cut into blocks of kRows and columns into chunks of kCols; a tile
// is the Gram block X_blk · X_chunkᵀ of each model (at::mm into per-task scratch, single-threaded
// BLAS inside a task) turned into kernel values elementwise. The loss is symmetric in (a, b), so
// the forward visits only the column chunks at or right of a block's first row and counts
// columns beyond the block twice (half the work); to balance that triangle, task k takes blocks
// k and nb-1-k, and each block writes its own partial sum, added in block order (deterministic).
// The backward needs M = W'X (W' = dL/dGram or dL/dd², symmetric) row by row: a task owns its
// row blocks and their M rows, loops over all column chunks, so no reduction across tasks.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <utility>
#include <vector>

#include "../checks.h"
#include "../similarity.h"

namespace gkd {
namespace cpu {
namespace {

constexpr int64_t kRows = 256;
constexpr int64_t kCols = 2048;

inline at::Tensor tile(const at::Tensor& buf, int64_t rows, int64_t cols) {
  return buf.narrow(0, 0, rows * cols).view({rows, cols});
}

// Gram tile -> what the loss and gradient read: the kernel value for cosine/l2/rbf, the cosine
// itself for poly (squared where used, since its gradient needs it). For l2/rbf the squared
// distance comes from |a|² + |b|² - 2a.b of the centred rows (similarity.h: gsp_base): rounding
// can make it slightly negative, so it is raised to 0 (a NaN stays NaN), and the diagonal
// (a == b) is set to exactly 0, where that identity cancels worst.
template <typename T>
void kernel_tile(const at::Tensor& G, const T* sq, int64_t r0, int64_t c0, GspKernel kernel,
                 double gamma) {
  if (gsp_normalized(kernel)) return;
  const int64_t rows = G.size(0), cols = G.size(1);
  T* g = G.data_ptr<T>();
  for (int64_t i = 0; i < rows; ++i) {
    T* gi = g + i * cols;
    const T si = sq[r0 + i];
    const T* sc = sq + c0;
    for (int64_t j = 0; j < cols; ++j) {
      const T v = si + sc[j] - T(2) * gi[j];
      gi[j] = v < T(0) ? T(0) : v;
    }
    const int64_t d = r0 + i - c0;
    if (d >= 0 && d < cols) gi[d] = T(0);
  }
  if (kernel == GspKernel::kL2) G.sqrt_();
  else G.mul_(-gamma).exp_();
}

template <typename T>
inline T kval(T v, GspKernel kernel) { return kernel == GspKernel::kPoly ? v * v : v; }

// What the tiles of both models are made from: the rows of gsp_rows and their squared norms.
template <typename T>
struct Models {
  const at::Tensor& xs;
  const at::Tensor& xt;
  const T* sqs;
  const T* sqt;
  GspKernel kernel;
  double gamma;

  // The kernel tiles of rows [r0, r0 + rows) x columns [c0, c0 + cols) of both models, at the
  // fronts of the scratch buffers Sb and Tb.
  std::pair<at::Tensor, at::Tensor> tiles(const at::Tensor& Sb, const at::Tensor& Tb, int64_t r0,
                                          int64_t rows, int64_t c0, int64_t cols) const {
    at::Tensor Ks = tile(Sb, rows, cols), Kt = tile(Tb, rows, cols);
    at::mm_out(Ks, xs.narrow(0, r0, rows), xs.narrow(0, c0, cols).t());
    at::mm_out(Kt, xt.narrow(0, r0, rows), xt.narrow(0, c0, cols).t());
    kernel_tile<T>(Ks, sqs, r0, c0, kernel, gamma);
    kernel_tile<T>(Kt, sqt, r0, c0, kernel, gamma);
    return {Ks, Kt};
  }
};

// Sum of squared differences over a forward tile; columns at or beyond r1 stand for their
// mirrored tile too, so they count twice.
template <typename T>
double tile_loss(const at::Tensor& Ks, const at::Tensor& Kt, int64_t r1, int64_t c0,
                 GspKernel kernel) {
  const int64_t rows = Ks.size(0), cols = Ks.size(1);
  const T* ks = Ks.data_ptr<T>();
  const T* kt = Kt.data_ptr<T>();
  double total = 0;
  for (int64_t i = 0; i < rows; ++i) {
    T inside = 0, beyond = 0;
    for (int64_t j = 0; j < cols; ++j) {
      const T d = kval(ks[i * cols + j], kernel) - kval(kt[i * cols + j], kernel);
      if (c0 + j < r1) inside += d * d; else beyond += d * d;
    }
    total += double(inside) + 2.0 * double(beyond);
  }
  return total;
}

template <typename T>
void gsp_forward_kernel(const Models<T>& m, double* partial) {
  const int64_t n = m.xs.size(0);
  const int64_t nb = (n + kRows - 1) / kRows;
  at::parallel_for(0, (nb + 1) / 2, 1, [&](int64_t k0, int64_t k1) {
    // Worker threads do not inherit the caller's below-autograd dispatch state.
    at::AutoDispatchBelowADInplaceOrView below_autograd;
    at::Tensor Sb = at::empty({kRows * kCols}, m.xs.options());
    at::Tensor Tb = at::empty({kRows * kCols}, m.xs.options());
    for (int64_t k = k0; k < k1; ++k) {
      const int64_t pair[2] = {k, nb - 1 - k};
      for (int p = 0; p < (pair[0] == pair[1] ? 1 : 2); ++p) {
        const int64_t blk = pair[p];
        const int64_t r0 = blk * kRows, rows = std::min(kRows, n - r0);
        double total = 0;
        for (int64_t c0 = r0; c0 < n; c0 += kCols) {
          const auto [Ks, Kt] = m.tiles(Sb, Tb, r0, rows, c0, std::min(kCols, n - c0));
          total += tile_loss<T>(Ks, Kt, r0 + rows, c0, m.kernel);
        }
        partial[blk] = total;
      }
    }
  });
}

// W' of both models from their kernel tiles, in place (Ks -> W'_s, Kt -> W'_t), without the
// common factor 2·grad/n²: with w = K_s - K_t, dL/dK_s = w and dL/dK_t = -w, then
//   cosine: dL/dGram = ±w;  poly: ±2w·cos;  l2: ±w / (2K), 0 where K = 0 (safe sqrt);
//   rbf: dL/dd² = ∓gamma·w·K.
template <typename T>
void weight_tile(const at::Tensor& Ks, const at::Tensor& Kt, GspKernel kernel, double gamma) {
  const int64_t m = Ks.numel();
  T* ks = Ks.data_ptr<T>();
  T* kt = Kt.data_ptr<T>();
  const T g = T(gamma);
  for (int64_t e = 0; e < m; ++e) {
    const T a = ks[e], b = kt[e];
    const T w = kval(a, kernel) - kval(b, kernel);
    switch (kernel) {
      case GspKernel::kCosine: ks[e] = w; kt[e] = -w; break;
      case GspKernel::kPoly: ks[e] = T(2) * w * a; kt[e] = -T(2) * w * b; break;
      case GspKernel::kL2:
        ks[e] = a > T(0) ? w / (T(2) * a) : T(0);
        kt[e] = b > T(0) ? -w / (T(2) * b) : T(0);
        break;
      case GspKernel::kRbf: ks[e] = -g * w * a; kt[e] = g * w * b; break;
    }
  }
}

template <typename T>
void gsp_backward_kernel(const Models<T>& m, at::Tensor& Ms, at::Tensor& Mt, at::Tensor& rs,
                         at::Tensor& rt) {
  const int64_t n = m.xs.size(0);
  const int64_t nb = (n + kRows - 1) / kRows;
  const bool dist = !gsp_normalized(m.kernel);
  const bool need_s = Ms.defined(), need_t = Mt.defined();
  at::parallel_for(0, nb, 1, [&](int64_t b0, int64_t b1) {
    // Worker threads do not inherit the caller's below-autograd dispatch state.
    at::AutoDispatchBelowADInplaceOrView below_autograd;
    at::Tensor Sb = at::empty({kRows * kCols}, m.xs.options());
    at::Tensor Tb = at::empty({kRows * kCols}, m.xs.options());
    for (int64_t blk = b0; blk < b1; ++blk) {
      const int64_t r0 = blk * kRows, rows = std::min(kRows, n - r0);
      for (int64_t c0 = 0; c0 < n; c0 += kCols) {
        const int64_t cols = std::min(kCols, n - c0);
        const auto [Ks, Kt] = m.tiles(Sb, Tb, r0, rows, c0, cols);
        weight_tile<T>(Ks, Kt, m.kernel, m.gamma);
        if (need_s) {
          Ms.narrow(0, r0, rows).addmm_(Ks, m.xs.narrow(0, c0, cols));
          if (dist) rs.narrow(0, r0, rows).add_(Ks.sum(1));
        }
        if (need_t) {
          Mt.narrow(0, r0, rows).addmm_(Kt, m.xt.narrow(0, c0, cols));
          if (dist) rt.narrow(0, r0, rows).add_(Kt.sum(1));
        }
      }
    }
  });
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> gsp_cpu(const at::Tensor& h_s, const at::Tensor& h_t,
                                                       c10::string_view kernel_name, double gamma) {
  const char* op = "gkd::gsp";
  const GspKernel kernel = check_gsp(op, h_s, h_t, kernel_name, gamma);
  const int64_t n = h_s.size(0);
  const at::Tensor bs = gsp_base(h_s, kernel), bt = gsp_base(h_t, kernel);
  const at::Tensor sq_s = row_sq(bs), sq_t = row_sq(bt);
  const at::Tensor xs = gsp_rows(bs, sq_s, kernel), xt = gsp_rows(bt, sq_t, kernel);
  const int64_t nb = (n + kRows - 1) / kRows;
  std::vector<double> partial(nb, 0.0);
  AT_DISPATCH_FLOATING_TYPES(h_s.scalar_type(), "gkd_gsp_cpu", [&] {
    const Models<scalar_t> m{xs, xt, sq_s.data_ptr<scalar_t>(), sq_t.data_ptr<scalar_t>(), kernel,
                             gamma};
    gsp_forward_kernel<scalar_t>(m, partial.data());
  });
  double total = 0;
  for (double p : partial) total += p;
  at::Tensor loss = at::scalar_tensor(total / (double(n) * double(n)), h_s.options());
  return {loss, sq_s, sq_t};
}

std::tuple<at::Tensor, at::Tensor> gsp_backward_cpu(const at::Tensor& grad, const at::Tensor& h_s,
                                                    const at::Tensor& h_t, const at::Tensor& sq_s,
                                                    const at::Tensor& sq_t,
                                                    c10::string_view kernel_name, double gamma,
                                                    bool need_s, bool need_t) {
  const char* op = "gkd::gsp_backward";
  const GspKernel kernel = check_gsp_backward(op, grad, h_s, h_t, sq_s, sq_t, kernel_name, gamma);
  const int64_t n = h_s.size(0);
  if (!need_s && !need_t) return {at::empty({0}, h_s.options()), at::empty({0}, h_s.options())};
  const at::Tensor ss = sq_s.contiguous(), st = sq_t.contiguous();
  const at::Tensor xs = gsp_rows(gsp_base(h_s, kernel), ss, kernel);
  const at::Tensor xt = gsp_rows(gsp_base(h_t, kernel), st, kernel);
  const bool dist = !gsp_normalized(kernel);
  at::Tensor Ms = need_s ? at::zeros_like(xs) : at::Tensor();
  at::Tensor Mt = need_t ? at::zeros_like(xt) : at::Tensor();
  at::Tensor rs = need_s && dist ? at::zeros({n}, xs.options()) : at::Tensor();
  at::Tensor rt = need_t && dist ? at::zeros({n}, xs.options()) : at::Tensor();
  AT_DISPATCH_FLOATING_TYPES(h_s.scalar_type(), "gkd_gsp_backward_cpu", [&] {
    const Models<scalar_t> m{xs, xt, ss.data_ptr<scalar_t>(), st.data_ptr<scalar_t>(), kernel,
                             gamma};
    gsp_backward_kernel<scalar_t>(m, Ms, Mt, rs, rt);
  });
  const at::Tensor scale = grad.reshape({}) * (2.0 / (double(n) * double(n)));
  at::Tensor gs = need_s ? gsp_finish(h_s, xs, ss, Ms, rs, kernel, scale) : at::empty({0}, h_s.options());
  at::Tensor gt = need_t ? gsp_finish(h_t, xt, st, Mt, rt, kernel, scale) : at::empty({0}, h_s.options());
  return {gs, gt};
}

}  // namespace

TORCH_LIBRARY_IMPL(gkd, CPU, m) {
  m.impl("gsp", &gsp_cpu);
  m.impl("gsp_backward", &gsp_backward_cpu);
}

}  // namespace cpu
}  // namespace gkd
