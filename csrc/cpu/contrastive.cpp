// CPU kernels of gkd::infonce and gkd::infonce_backward (tiled G-CRD InfoNCE).
//
// Logits S = a·bᵀ with a = z_s / tau [n, D] (anchors) and b = z_t [m, D] (candidates, m >= n:
// the first n are the anchors' positives; symmetric mode has m == n).
// Parallel mapping: the n anchor rows are cut into row blocks of kRows; the blocks are split
// into T contiguous ranges (T = number of threads), one task each. A task walks its blocks and,
// for each, all m candidate columns in chunks of kCols: the logits tile a_blk · b_chunkᵀ comes from
// at::mm into a per-task scratch buffer (kRows × kCols, in cache), so the matmul runs at BLAS
// speed single-threaded inside the task while the tasks keep both cores busy, and the tile's
// exp/reductions never leave the task. Row statistics belong to the task that owns the rows;
// column statistics (symmetric mode) and the z_t gradient, which sum over all rows, go to
// per-task partials merged afterwards in task order, so results are deterministic for a given
// thread count and no n×m tensor ever exists (scratch: 2·kRows·kCols per task).
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "../checks.h"
#include "../similarity.h"

namespace gkd {
namespace cpu {
namespace {

constexpr int64_t kRows = 256;
constexpr int64_t kCols = 2048;

struct Tasks {
  int64_t blocks, tasks;
  int64_t first(int64_t t) const { return blocks * t / tasks; }
};

inline Tasks make_tasks(int64_t n) {
  const int64_t blocks = (n + kRows - 1) / kRows;
  return {blocks, std::max<int64_t>(1, std::min<int64_t>(at::get_num_threads(), blocks))};
}

// A [rows, cols] view on the front of a flat scratch buffer.
inline at::Tensor tile(const at::Tensor& buf, int64_t rows, int64_t cols) {
  return buf.narrow(0, 0, rows * cols).view({rows, cols});
}

// Online log-sum-exp: (m, s) represents m + log(s). Merging a chunk whose maximum is x_max
// rescales the old sum by exp(m - m') with m' = max(m, x_max), so no exp ever overflows and the
// result equals the one-pass log-sum-exp up to rounding. The chunk itself is exponentiated
// relative to m' (max subtraction) by the caller.
template <typename T>
inline void lse_rescale(T& m, T& s, T new_max) {
  if (new_max > m) {
    s = (m == -std::numeric_limits<T>::infinity()) ? T(0) : s * std::exp(m - new_max);
    m = new_max;
  }
}

template <typename scalar_t>
void infonce_forward_kernel(const at::Tensor& a, const at::Tensor& b, scalar_t* lse_row,
                            scalar_t* col_m, scalar_t* col_s, const Tasks& tk) {
  const int64_t n = a.size(0), m_cols = b.size(0);
  const bool sym = col_m != nullptr;
  at::parallel_for(0, tk.tasks, 1, [&](int64_t t0, int64_t t1) {
    // Worker threads do not inherit the caller's below-autograd dispatch state.
    at::AutoDispatchBelowADInplaceOrView below_autograd;
    at::Tensor S = at::empty({kRows * kCols}, a.options());
    at::Tensor E = at::empty({kRows * kCols}, a.options());
    at::Tensor red = at::empty({std::max(kRows, kCols)}, a.options());
    std::vector<scalar_t> m(kRows), s(kRows);
    for (int64_t t = t0; t < t1; ++t) {
      scalar_t* cm = sym ? col_m + t * m_cols : nullptr;
      scalar_t* cs = sym ? col_s + t * m_cols : nullptr;
      for (int64_t blk = tk.first(t); blk < tk.first(t + 1); ++blk) {
        const int64_t r0 = blk * kRows, rows = std::min(kRows, n - r0);
        std::fill(m.begin(), m.end(), -std::numeric_limits<scalar_t>::infinity());
        std::fill(s.begin(), s.end(), scalar_t(0));
        for (int64_t c0 = 0; c0 < m_cols; c0 += kCols) {
          const int64_t cols = std::min(kCols, m_cols - c0);
          at::Tensor St = tile(S, rows, cols), Et = tile(E, rows, cols);
          at::mm_out(St, a.narrow(0, r0, rows), b.narrow(0, c0, cols).t());
          // Rows: chunk maxima, rescale, then sum exp(S - m') over the chunk.
          at::Tensor rmax = red.narrow(0, 0, rows);
          at::amax_out(rmax, St, {1});
          const scalar_t* rm = rmax.data_ptr<scalar_t>();
          for (int64_t i = 0; i < rows; ++i) lse_rescale(m[i], s[i], rm[i]);
          at::Tensor mv = at::from_blob(m.data(), {rows, 1}, a.options());
          at::sub_out(Et, St, mv).exp_();
          at::sum_out(rmax, Et, {1});
          for (int64_t i = 0; i < rows; ++i) s[i] += rm[i];
          if (sym) {
            // Columns: the same update with this block's rows as the chunk.
            at::Tensor cmax = red.narrow(0, 0, cols);
            at::amax_out(cmax, St, {0});
            const scalar_t* cx = cmax.data_ptr<scalar_t>();
            for (int64_t j = 0; j < cols; ++j) lse_rescale(cm[c0 + j], cs[c0 + j], cx[j]);
            at::Tensor cv = at::from_blob(cm + c0, {1, cols}, a.options());
            at::sub_out(Et, St, cv).exp_();
            at::sum_out(cmax, Et, {0});
            for (int64_t j = 0; j < cols; ++j) cs[c0 + j] += cx[j];
          }
        }
        for (int64_t i = 0; i < rows; ++i) lse_row[r0 + i] = m[i] + std::log(s[i]);
      }
    }
  });
}

template <typename scalar_t>
void infonce_backward_kernel(const at::Tensor& a, const at::Tensor& b, const at::Tensor& zs,
                             const at::Tensor& lse_s, const at::Tensor& lse_t, bool sym,
                             double c, at::Tensor& gs, at::Tensor& gt_parts, const Tasks& tk) {
  const int64_t n = a.size(0), m_cols = b.size(0);
  const bool need_s = gs.defined(), need_t = gt_parts.defined();
  at::parallel_for(0, tk.tasks, 1, [&](int64_t t0, int64_t t1) {
    // Worker threads do not inherit the caller's below-autograd dispatch state.
    at::AutoDispatchBelowADInplaceOrView below_autograd;
    at::Tensor S = at::empty({kRows * kCols}, a.options());
    at::Tensor E = sym ? at::empty({kRows * kCols}, a.options()) : at::Tensor();
    for (int64_t t = t0; t < t1; ++t) {
      at::Tensor gt = need_t ? gt_parts[t] : at::Tensor();
      for (int64_t blk = tk.first(t); blk < tk.first(t + 1); ++blk) {
        const int64_t r0 = blk * kRows, rows = std::min(kRows, n - r0);
        const at::Tensor lr = lse_s.narrow(0, r0, rows).unsqueeze(1);
        for (int64_t c0 = 0; c0 < m_cols; c0 += kCols) {
          const int64_t cols = std::min(kCols, m_cols - c0);
          at::Tensor St = tile(S, rows, cols);
          const at::Tensor bc = b.narrow(0, c0, cols);
          at::mm_out(St, a.narrow(0, r0, rows), bc.t());
          // G' = c·(exp(S - lse_row) [+ exp(S - lse_col)]), built in place over S.
          if (sym) {
            at::Tensor Et = tile(E, rows, cols);
            at::sub_out(Et, St, lse_t.narrow(0, c0, cols).unsqueeze(0)).exp_();
            St.sub_(lr).exp_().add_(Et);
          } else {
            St.sub_(lr).exp_();
          }
          if (need_s) {
            at::Tensor g = gs.narrow(0, r0, rows);
            g.addmm_(St, bc, 1.0, c);
          }
          if (need_t) {
            at::Tensor g = gt.narrow(0, c0, cols);
            g.addmm_(St.t(), zs.narrow(0, r0, rows), 1.0, c);
          }
        }
      }
    }
  });
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> infonce_cpu(const at::Tensor& z_s,
                                                           const at::Tensor& z_t,
                                                           double temperature, bool symmetric,
                                                           c10::string_view precision) {
  const char* op = "gkd::infonce";
  check_infonce(op, z_s, z_t, temperature, symmetric, precision);
  const int64_t n = z_s.size(0), m = z_t.size(0);
  // Logits of the tiles: (z_s / tau) · z_tᵀ, with 1/tau folded into the anchors once.
  const at::Tensor a = (z_s / temperature).contiguous();
  const at::Tensor b = z_t.contiguous();
  const Tasks tk = make_tasks(n);
  at::Tensor lse_s = at::empty({n}, z_s.options());
  at::Tensor lse_t = at::empty({0}, z_s.options());
  at::Tensor col_m, col_s;
  if (symmetric) {
    col_m = at::full({tk.tasks, m}, -std::numeric_limits<double>::infinity(), z_s.options());
    col_s = at::zeros({tk.tasks, m}, z_s.options());
  }
  AT_DISPATCH_FLOATING_TYPES(z_s.scalar_type(), "gkd_infonce_cpu", [&] {
    infonce_forward_kernel<scalar_t>(a, b, lse_s.data_ptr<scalar_t>(),
                                     symmetric ? col_m.data_ptr<scalar_t>() : nullptr,
                                     symmetric ? col_s.data_ptr<scalar_t>() : nullptr, tk);
  });
  if (symmetric) {
    // Merge the per-task column statistics (each task saw every column).
    const at::Tensor mx = std::get<0>(col_m.max(0));
    lse_t = mx + (col_s * (col_m - mx.unsqueeze(0)).exp()).sum(0).log();
  }
  const at::Tensor diag = infonce_diag(z_s, z_t, temperature);
  return {infonce_loss(lse_s, lse_t, diag, symmetric), lse_s, lse_t};
}

std::tuple<at::Tensor, at::Tensor> infonce_backward_cpu(
    const at::Tensor& grad, const at::Tensor& z_s, const at::Tensor& z_t, const at::Tensor& lse_s,
    const at::Tensor& lse_t, double temperature, bool symmetric, c10::string_view precision,
    bool need_s, bool need_t) {
  const char* op = "gkd::infonce_backward";
  check_infonce_backward(op, grad, z_s, z_t, lse_s, lse_t, temperature, symmetric, precision);
  const int64_t n = z_s.size(0), m = z_t.size(0), D = z_s.size(1);
  at::Tensor gs = need_s ? at::zeros({n, D}, z_s.options()) : at::Tensor();
  at::Tensor gt_parts;
  if (!need_s && !need_t) return {at::empty({0}, z_s.options()), at::empty({0}, z_s.options())};
  const at::Tensor a = (z_s / temperature).contiguous();
  const at::Tensor b = z_t.contiguous(), zs = z_s.contiguous();
  const at::Tensor ls = lse_s.contiguous(), lt = symmetric ? lse_t.contiguous() : lse_t;
  const Tasks tk = make_tasks(n);
  if (need_t) gt_parts = at::zeros({tk.tasks, m, D}, z_s.options());
  const double c = symmetric ? 0.5 / n : 1.0 / n;
  AT_DISPATCH_FLOATING_TYPES(z_s.scalar_type(), "gkd_infonce_backward_cpu", [&] {
    infonce_backward_kernel<scalar_t>(a, b, zs, ls, lt, symmetric, c, gs, gt_parts, tk);
  });
  const double ck = 1.0 / n;  // c · (number of directions): 1/n in both modes
  const double inv_tau = 1.0 / temperature;
  at::Tensor out_s = need_s ? infonce_finish(gs, z_t.narrow(0, 0, n), ck, inv_tau, grad, z_s)
                            : at::empty({0}, z_s.options());
  at::Tensor out_t = at::empty({0}, z_s.options());
  if (need_t) {
    at::Tensor gt = tk.tasks == 1 ? gt_parts[0] : gt_parts.sum(0);
    out_t = infonce_finish(gt, z_s, ck, inv_tau, grad, z_s);
  }
  return {out_s, out_t};
}

}  // namespace

TORCH_LIBRARY_IMPL(gkd, CPU, m) {
  m.impl("infonce", &infonce_cpu);
  m.impl("infonce_backward", &infonce_backward_cpu);
}

}  // namespace cpu
}  // namespace gkd
