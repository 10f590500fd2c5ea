// Scalar math of the LSP loss shared by the CPU and CUDA kernels: the kernel logit of an edge
// from its per-edge feature reductions, and the kernel's derivatives in a form the kernels
// can apply with one gathered row. Host and device code compile the same functions, so the
// two backends cannot drift apart.
#pragma once

#include "hd_math.h"
#include "vocab.h"

namespace gkd {
namespace lsp {

using K = LspKernel;

// Norms below this are clamped, as torch.nn.functional.cosine_similarity does per vector.
constexpr double kCosEps = 1e-8;

// Which per-edge reductions over the features a kernel needs, with a = h[i] (destination)
// and b = h[j] (source):  x = sum (a-b)^2 (rbf, l2), sum |a-b| (laplacian), or <a,b>
// (cosine, poly, linear);  y = <b,b> (cosine, poly only; ||a|| is computed once per row).
enum class Form { kSq, kL1, kDot };

GKD_HD Form form_of(K k) {
  return (k == K::kRbf || k == K::kL2) ? Form::kSq : (k == K::kLaplacian ? Form::kL1 : Form::kDot);
}
GKD_HD bool uses_norm(K k) { return k == K::kCosine || k == K::kPoly; }

// cos(a, b) with each norm clamped at kCosEps.
template <typename A>
GKD_HD A cosine(A dot, A na, A nb) {
  return dot / (fmax2(na, A(kCosEps)) * fmax2(nb, A(kCosEps)));
}

// The kernel logit l = k(a, b) from the reductions (x, y) and the row norm na.
template <typename A>
GKD_HD A logit(K kernel, A param, A x, A y, A na) {
  switch (kernel) {
    case K::kRbf: return fexp(-param * x);
    case K::kLaplacian: return fexp(-x / param);
    case K::kL2: return fsqrt(x);
    case K::kCosine: return cosine(x, na, fsqrt(y));
    case K::kPoly: { const A c = cosine(x, na, fsqrt(y)); return c * c; }
    case K::kLinear: break;
  }
  return x;
}

// c times the kernel's derivatives, where c = dLoss/dl for this edge:
//   c * dk/da = ra * a + rb * b      (laplacian: ra * sign(a - b); rb unused)
//   c * dk/db = su * a + sv * b      (laplacian: su * sign(a - b); sv unused)
// The row pass of the backward applies the first to grad[i], the transposed pass the second
// to grad[j]. Non-differentiable points take the subgradient torch's autograd takes: 0 for
// the l2 distance at a == b and for |.| at 0, and no norm term below kCosEps.
template <typename A>
struct Grad {
  A ra, rb, su, sv;
};

template <typename A>
GKD_HD Grad<A> grad(K kernel, A param, A c, A k, A x, A y, A na) {
  Grad<A> g{A(0), A(0), A(0), A(0)};
  switch (kernel) {
    case K::kRbf: {  // dk/da = -2 gamma k (a - b) = -dk/db
      const A w = A(-2) * param * c * k;
      g.ra = w; g.rb = -w; g.su = -w; g.sv = w;
      break;
    }
    case K::kL2: {  // dk/da = (a - b) / ||a - b|| = -dk/db
      const A w = k > A(0) ? c / k : A(0);
      g.ra = w; g.rb = -w; g.su = -w; g.sv = w;
      break;
    }
    case K::kLaplacian: {  // dk/da = -(k / sigma) sign(a - b) = -dk/db
      const A w = -c * k / param;
      g.ra = w; g.su = -w;
      break;
    }
    case K::kCosine:
    case K::kPoly: {
      // dcos/da = b / (|a| |b|) - cos a / |a|^2 (the second term only where |a| > eps);
      // poly = cos^2 scales everything by 2 cos.
      const A nb = fsqrt(y);
      const A na_c = fmax2(na, A(kCosEps)), nb_c = fmax2(nb, A(kCosEps));
      const A cs = x / (na_c * nb_c);
      const A ce = kernel == K::kPoly ? A(2) * c * cs : c;
      const A cross = ce / (na_c * nb_c);
      g.rb = cross;
      g.su = cross;
      g.ra = na > A(kCosEps) ? -ce * cs / (na * na) : A(0);
      g.sv = nb > A(kCosEps) ? -ce * cs / (nb * nb) : A(0);
      break;
    }
    case K::kLinear:  // dk/da = b, dk/db = a
      g.rb = c; g.su = c;
      break;
  }
  return g;
}

}  // namespace lsp
}  // namespace gkd
