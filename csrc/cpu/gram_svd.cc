// Gram path (see gram_svd.h): the driver. Its stages live in their own files.
//
// With p = min(m, n) and q = max(m, n), let Y be the q x p matrix A (m >= n) or Aᵀ (m < n), so
// that G = Yᵀ Y is the p x p Gram matrix of the smaller side. The eigenpairs (λ_j, e_j) of G give
// the SVD of A: σ_j = sqrt(λ_j), the factor on the small side is e_j and the other one is
// Y e_j / σ_j. Everything below runs in float64 on data that fits in cache:
//   1. G = Yᵀ Y over blocks of rows of Y (gram_matrix.h), then scaled to a largest diagonal of 1;
//   2. Householder reduction of G to a tridiagonal T = Qᵀ G Q (tridiagonal.h);
//   3. the top-k eigenvalues of T: by multisection on Sturm counts until each is alone in its
//      bracket, then Newton's method on det(T − x·I), where k is at most 3p/4 (UseBisection),
//      else all of them by the root-free implicit QL iteration (tridiagonal_eigen.h);
//   4. the top-k eigenvectors of T by inverse iteration (tridiagonal_eigen.h), and their
//      orthogonality checked here;
//   5. back-transformation by Q, then W = Y E by GEMM;
//   6. the columns of W normalised; those whose σ_j is too small for the eigenvectors'
//      accuracy to make them orthogonal get modified Gram–Schmidt, repeated while a pass
//      removes more than half of a column, and a column of negligible norm (σ_j ≈ 0) is
//      replaced by a unit vector orthogonal to the others.
//
// Why not LAPACK: its routines for these sizes spend most of their time outside arithmetic
// (the per-stage measurements: benchmarks/RESULTS.md, "Thresholds of the CPU kernel"). Where
// the path is preferred: PreferGram in truncated_svd.cc.
#include "cpu/gram_svd.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>

#include "cpu/blas.h"
#include "cpu/gram_matrix.h"
#include "cpu/tridiagonal.h"
#include "cpu/tridiagonal_eigen.h"
#include "cpu/vector_ops.h"

namespace rrae_fast::cpu {

namespace {

constexpr double kEps = std::numeric_limits<double>::epsilon();

// max |x_i · x_j − δ_ij| over the rows of x (k x p); xx is k x k scratch.
double OrthogonalityError(const Lapack<double>& la, int64_t k, int64_t p, const double* x,
                          double* xx) {
  blas::Gemm(la, 'T', 'N', k, k, p, 1.0, x, p, x, p, 0.0, xx, k);  // column-major: xᵀx, x is p x k
  double worst = 0;
  for (int64_t i = 0; i < k; ++i) {
    for (int64_t j = 0; j < k; ++j) worst = std::max(worst, std::abs(xx[i * k + j] - (i == j)));
  }
  return worst;
}

// ------------------------------------------------------------------------------------------
// 5.–6. The other factor
// ------------------------------------------------------------------------------------------

// wt (k x q) = (Y e)ᵀ for e (p x k), one GEMM per block of rows of Y.
void MultiplyY(const Lapack<double>& la, const float* a, int64_t m, int64_t n, int64_t k,
               const double* e, double* wt, GramScratch& sc) {
  const int64_t p = std::min(m, n), q = std::max(m, n), block = GramRowBlock(p, q);
  double* rows = AlignedRows(sc.rows);
  for (int64_t r0 = 0; r0 < q; r0 += block) {
    const int64_t count = std::min(block, q - r0);
    if (block < q) LoadGramRows(a, m, n, r0, count, rows);  // else the Gram matrix's copy is there
    // Column-major: wt is q x k (ld q), rows is p x count, e is k x p: wt[r0 ..] = rowsᵀ eᵀ.
    blas::Gemm(la, 'T', 'T', count, k, p, 1.0, rows, p, e, k, 0.0, wt + r0, q);
  }
}

// Rows [from, k) of w (k x q) orthonormalised in order against every row before them (those
// before `from` orthonormal already): modified Gram–Schmidt, repeated while a pass removes more
// than half of the row; a row reduced to nothing (σ_j ≈ 0) becomes the unit vector e_t,
// projected, that keeps the most norm.
void OrthonormalizeEach(int64_t from, int64_t k, int64_t q, double* w, double* candidate) {
  for (int64_t j = from; j < k; ++j) {
    double* wj = w + j * q;
    double norm = std::sqrt(vec::Dot(wj, wj, q));
    bool kept = false;
    for (int pass = 0; pass < 4 && norm > 0; ++pass) {
      vec::Project(w, j, wj, q);
      const double after = std::sqrt(vec::Dot(wj, wj, q));
      const bool settled = after > 0.5 * norm;
      norm = after;
      if (settled) {
        kept = norm > std::numeric_limits<double>::min() / kEps;
        break;
      }
    }
    if (kept) {
      const double inv = 1.0 / norm;
      for (int64_t r = 0; r < q; ++r) wj[r] *= inv;
      continue;
    }
    double best = -1;
    for (int64_t t = 0; t < q && best < 0.5; ++t) {
      std::fill(candidate, candidate + q, 0.0);
      candidate[(j + t) % q] = 1;
      vec::Project(w, j, candidate, q);
      vec::Project(w, j, candidate, q);
      const double c = std::sqrt(vec::Dot(candidate, candidate, q));
      if (c > best) {
        best = c;
        std::copy(candidate, candidate + q, wj);
      }
    }
    const double inv = 1.0 / best;
    for (int64_t r = 0; r < q; ++r) wj[r] *= inv;
  }
}

// The columns of the column-major q x nb `block` orthonormalised by CholeskyQR (the same
// columns as Gram–Schmidt gives): once where R's diagonal spans less than 1e2 (the loss of
// orthogonality, ~ε·κ², is then below 1e-11), else twice. False, with the block unchanged,
// when its Gram matrix is too ill-conditioned for that to be accurate (κ ≳ 1e6, e.g. a
// negligible column) or the second pass does not find the block orthonormal; r is nb x nb
// scratch, copy q x nb.
bool CholeskyQr2(const Lapack<double>& la, int64_t q, int64_t nb, double* block, double* r,
                 double* copy) {
  std::copy(block, block + q * nb, copy);
  for (int pass = 0; pass < 2; ++pass) {
    blas::Gemm(la, 'T', 'N', nb, nb, q, 1.0, block, q, block, q, 0.0, r, nb);
    bool ok = blas::PotrfUpper(la, nb, r, nb) == 0;
    double big = 0, small = std::numeric_limits<double>::infinity(), off = 0;
    for (int64_t j = 0; ok && j < nb; ++j) {
      big = std::max(big, r[j * nb + j]);
      small = std::min(small, r[j * nb + j]);
      for (int64_t i = 0; i < j; ++i) off = std::max(off, std::abs(r[j * nb + i]));
    }
    ok = ok && small > 1e-6 * big;
    if (ok && pass == 1)
      ok = std::abs(big - 1) <= 1e-6 && std::abs(small - 1) <= 1e-6 && off <= 1e-6;
    if (!ok) {
      std::copy(copy, copy + q * nb, block);
      return false;
    }
    blas::TrsmRightUpper(la, q, nb, r, nb, block, q);
    if (pass == 0 && big < 1e2 * small) break;
  }
  return true;
}

// Whether the columns of `block` (q x rest) are orthogonal to 1e-8 to the first `reliable`
// rows of w (k x q, rows as columns of length q); small holds reliable x rest.
bool OrthogonalTo(const Lapack<double>& la, int64_t reliable, int64_t rest, int64_t q,
                  const double* w, const double* block, double* small) {
  if (reliable == 0) return true;
  blas::Gemm(la, 'T', 'N', reliable, rest, q, 1.0, w, q, block, q, 0.0, small, reliable);
  for (int64_t i = 0; i < reliable * rest; ++i) {
    if (!(std::abs(small[i]) <= 1e-8)) return false;
  }
  return true;
}

// Orthonormalises the rows of w (k x q), in order. Row j is W's column Y e_j, of norm ~σ_j,
// and |w_i · w_j| <= δ·scale for i != j (δ bounds the eigenvectors' residuals and loss of
// orthogonality in T's units), so the leading rows with λ_j >= 1e9·δ are orthogonal to 1e-9
// once normalised and need nothing more. The trailing others are projected out of those (two
// block passes), then orthonormalised among themselves by CholeskyQR2, or row by row where
// that is not accurate (OrthonormalizeEach).
void OrthonormalizeRows(const Lapack<double>& la, int64_t k, int64_t q, const double* lam,
                        double delta, double* w, GramScratch& sc) {
  int64_t reliable = 0;
  for (; reliable < k && lam[reliable] >= 1e9 * delta; ++reliable) {
    double* wj = w + reliable * q;
    const double norm = std::sqrt(vec::Dot(wj, wj, q));
    if (!(norm > std::numeric_limits<double>::min() / kEps)) break;
    const double inv = 1.0 / norm;
    for (int64_t r = 0; r < q; ++r) wj[r] *= inv;
  }
  if (reliable == k) return;
  const int64_t rest = k - reliable;
  double* block = w + reliable * q;  // column-major q x rest
  double* small = sc.xx.data();      // k x k
  for (int pass = 0; pass < 2 && reliable > 0; ++pass) {
    blas::Gemm(la, 'T', 'N', reliable, rest, q, 1.0, w, q, block, q, 0.0, small, reliable);
    blas::Gemm(la, 'N', 'N', q, rest, reliable, -1.0, w, q, small, reliable, 1.0, block, q);
  }
  // CholeskyQR2 makes the block orthonormal in itself only. Where a row was nearly all in the
  // span of the reliable rows (σ_j ≈ 0: what the projections leave is rounding, itself mostly
  // along those rows), it is not orthogonal to them afterwards: checked, then row by row.
  if (CholeskyQr2(la, q, rest, block, small, sc.copy.data()) &&
      OrthogonalTo(la, reliable, rest, q, w, block, small)) {
    return;
  }
  OrthonormalizeEach(reliable, k, q, w, sc.work.data());
}

}  // namespace

bool GramSvd(const Lapack<double>& la, int64_t m, int64_t n, int64_t k, int64_t ldu,
             const float* a, float* u, float* s, float* vt, GramScratch& sc) {
  const int64_t p = std::min(m, n), q = std::max(m, n);
  sc.d.resize(p);
  sc.e.resize(p);
  sc.tau.resize(p);
  sc.lam.resize(k);
  sc.eig.resize(2 * p + 5 * k);
  sc.lu.resize(TopEigenvectorsWork(p));
  sc.x.resize(k * p);
  sc.ev.resize(p * k);
  sc.xx.resize(k * k);
  sc.wt.resize(k * q);
  sc.copy.resize(k * q);
  sc.work.resize(std::max(2 * p, q));

  // 1. G = YᵀY, scaled so that its largest diagonal entry (its largest entry) is 1.
  GramOfShortSide(la, a, m, n, sc.rows, sc.g);
  double* g = sc.g.data();
  double scale = 0;
  for (int64_t i = 0; i < p; ++i) scale = std::max(scale, g[i * p + i]);
  if (!std::isfinite(scale)) return false;
  if (scale == 0) scale = 1;  // A = 0: every σ is 0, the factors are completions
  const double inv_scale = 1.0 / scale;
  for (int64_t i = 0; i < p * p; ++i) g[i] *= inv_scale;

  // 2.–3. T and its top-k eigenvalues, descending.
  double* d = sc.d.data();
  double* e = sc.e.data();
  ReduceToTridiagonal(p, g, d, e, sc.tau.data(), sc.work.data());
  double* lam = sc.lam.data();
  if (!TridiagonalTopEigenvalues(p, k, d, e, UseBisection(p, k), lam, sc.eig.data())) {
    return false;
  }

  // 4. Their eigenvectors, checked.
  double* x = sc.x.data();
  double residual = 0;
  if (!TopEigenvectors(p, k, d, e, lam, x, &residual, sc.lu.data())) return false;
  const double orthogonality = OrthogonalityError(la, k, p, x, sc.xx.data());
  if (!(orthogonality <= 1e-8)) return false;

  // 5. In G's coordinates (p x k, a vector per column), then W = Y E (q x k).
  ApplyReflectors(p, k, g, sc.tau.data(), false, x);
  double* ev = sc.ev.data();
  for (int64_t i = 0; i < p; ++i) {
    for (int64_t j = 0; j < k; ++j) ev[i * k + j] = x[j * p + i];
  }
  double* wt = sc.wt.data();
  MultiplyY(la, a, m, n, k, ev, wt, sc);

  // δ: the eigenvectors' residuals and orthogonality, and the tridiagonal reduction's error.
  const double delta = residual + orthogonality + 8.0 * double(p) * kEps;
  OrthonormalizeRows(la, k, q, lam, delta, wt, sc);

  for (int64_t j = 0; j < k; ++j) {
    s[j] = static_cast<float>(std::sqrt(std::max(lam[j], 0.0) * scale));
  }
  const double* large = wt;  // rows: factor columns on the long side (q long)
  if (m >= n) {              // V on the short side, U on the long one
    for (int64_t j = 0; j < k; ++j) {
      for (int64_t c = 0; c < n; ++c) vt[j * n + c] = static_cast<float>(ev[c * k + j]);
    }
    for (int64_t r = 0; r < m; ++r) {
      for (int64_t j = 0; j < k; ++j) u[r * ldu + j] = static_cast<float>(large[j * q + r]);
    }
  } else {
    for (int64_t r = 0; r < m; ++r) {
      for (int64_t j = 0; j < k; ++j) u[r * ldu + j] = static_cast<float>(ev[r * k + j]);
    }
    for (int64_t j = 0; j < k; ++j) {
      for (int64_t c = 0; c < n; ++c) vt[j * n + c] = static_cast<float>(large[j * q + c]);
    }
  }
  return true;
}

}  // namespace rrae_fast::cpu
