// Shifted solves with the projected Gram matrix (see shifted_gram_solve.h).
#include "cpu/shifted_gram_solve.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "common/finite.h"
#include "cpu/avx2.h"
#include "cpu/blas.h"
#include "cpu/gram_matrix.h"
#include "cpu/tridiagonal.h"

namespace rrae_fast::cpu {

namespace {

// Conjugate gradients: relative residual (well below float32's rounding and near float64's),
// and at most this many iterations.
constexpr double kCgTolerance = 1e-12;
constexpr int64_t kCgMaxIters = 30;
// Fewer would not reach kCgTolerance even for a large gap (each iteration gains ~σ_{c+1}²/σ_c²).
constexpr int64_t kCgMinIters = 3;

struct SolveScratch {
  std::vector<double> rows;   // a block of rows of Y (gram_matrix.h)
  std::vector<double> g;      // p x p: G, then H, then the reflectors
  std::vector<double> d, e;   // p: the tridiagonal matrix T
  std::vector<double> tau;    // p: the reflectors' scalars
  std::vector<double> work;   // 2p: the reduction's scratch
  std::vector<double> b;      // c x p: the basis rows in float64
  std::vector<double> bg;     // c x p: B G, then Z
  std::vector<double> bgb;    // c x c: B G Bᵀ
  std::vector<double> outer;  // p x p: Bᵀ Z
  std::vector<double> x;      // c x p: right-hand sides, then solutions
  std::vector<double> l;      // p: the LDLᵀ multipliers of one shift
  std::vector<double> piv;    // p: its pivots
  std::vector<double> a64;    // m x n: A in float64 (for the conjugate gradients' GEMMs)
  std::vector<double> cg;     // the conjugate gradients' blocks (4 c x p + c x q + 3 c)
};

// Pivots of the LDLᵀ factors of μI − T (diagonal d, couplings e) into piv, multipliers into l;
// false if a pivot is not positive (μI − T is not numerically positive definite).
bool FactorShifted(int64_t p, const double* d, const double* e, double mu, double* l,
                   double* piv) {
  double pivot = mu - d[0];
  if (!(pivot > 0)) return false;
  piv[0] = pivot;
  for (int64_t i = 1; i < p; ++i) {
    const double li = -e[i - 1] / pivot;
    pivot = (mu - d[i]) + li * e[i - 1];  // μ − d_i − e²/D
    if (!(pivot > 0)) return false;
    l[i - 1] = li;
    piv[i] = pivot;
  }
  return true;
}

// ------------------------------------------------------------------------------------------
// Conjugate gradients, matrix-free (where the caller has checked the gap)
// ------------------------------------------------------------------------------------------

// Rows of h (count x p) = H w = P Yᵀ Y P w for the rows of w (projected here, in place), by two
// GEMMs with the float64 copy a64 of A (row-major m x n); t: count x q scratch.
void ApplyH(const Lapack<double>& la, int64_t m, int64_t n, int64_t count, const double* a64,
            const double* b, int64_t c, double* w, double* t, double* h) {
  const int64_t p = std::min(m, n), q = std::max(m, n);
  auto project = [&](double* rows) {  // rows <- rows − (rows Bᵀ) B
    for (int64_t r = 0; r < count; ++r) {
      double* x = rows + r * p;
      for (int64_t j = 0; j < c; ++j) {
        const double* bj = b + j * p;
        double dot = 0;
#pragma omp simd reduction(+ : dot)
        for (int64_t i = 0; i < p; ++i) dot += bj[i] * x[i];
#pragma omp simd
        for (int64_t i = 0; i < p; ++i) x[i] -= dot * bj[i];
      }
    }
  };
  project(w);
  // Column-major views: the rows of w, t and h are columns (p x count, q x count, p x count).
  if (m >= n) {  // Y = A, whose row-major storage is Yᵀ column-major (p x q)
    blas::Gemm(la, 'T', 'N', q, count, p, 1.0, a64, p, w, p, 0.0, t, q);
    blas::Gemm(la, 'N', 'N', p, count, q, 1.0, a64, p, t, q, 0.0, h, p);
  } else {  // Y = Aᵀ, stored as Y column-major (q x p)
    blas::Gemm(la, 'N', 'N', q, count, p, 1.0, a64, q, w, p, 0.0, t, q);
    blas::Gemm(la, 'T', 'N', p, count, q, 1.0, a64, q, t, q, 0.0, h, p);
  }
  project(h);
}

// The rows x_j of (s_j² I − H) x_j = r_j (into sc.x) by conjugate gradients, all rows per pass
// over A, to a relative residual of `rtol` within `max_iters`; false if a row did not get there
// or met a direction of non-positive curvature (then the caller takes the tridiagonal form).
// Rows with s_j = 0 stay 0.
template <typename T>
bool ShiftedCg(const Lapack<double>& la, int64_t m, int64_t n, int64_t c, const T* a,
               const double* b, const T* s, const T* rhs, double rtol, int64_t max_iters,
               SolveScratch& sc) {
  const int64_t p = std::min(m, n), q = std::max(m, n);
  sc.x.assign(c * p, 0.0);
  sc.a64.assign(a, a + m * n);
  sc.cg.resize(4 * c * p + c * q + 3 * c);
  double* r = sc.cg.data();
  double* dir = r + c * p;
  double* w = dir + c * p;
  double* h = w + c * p;
  double* t = h + c * p;
  double* rs = t + c * q;
  double* target = rs + c;
  double* shift = target + c;
  for (int64_t j = 0; j < c; ++j) {
    const double sj = std::abs(double(s[j]));
    shift[j] = sj * sj;
    double norm2 = 0;
    for (int64_t i = 0; i < p; ++i) {
      const double v = sj > 0 ? double(rhs[j * p + i]) : 0.0;
      r[j * p + i] = v;
      dir[j * p + i] = v;
      norm2 += v * v;
    }
    rs[j] = norm2;
    target[j] = rtol * rtol * norm2;
  }
  for (int64_t it = 0;; ++it) {
    bool done = true;
    for (int64_t j = 0; j < c; ++j) done = done && rs[j] <= target[j];
    if (done) return true;
    if (it == max_iters) return false;
    std::copy(dir, dir + c * p, w);
    ApplyH(la, m, n, c, sc.a64.data(), b, c, w, t, h);
    for (int64_t j = 0; j < c; ++j) {
      if (rs[j] <= target[j]) continue;  // a converged row keeps its x
      double* d = dir + j * p;
      double* hj = h + j * p;
      double curvature = 0;
      for (int64_t i = 0; i < p; ++i) {
        hj[i] = shift[j] * d[i] - hj[i];  // (s_j² I − H) d
        curvature += d[i] * hj[i];
      }
      if (!(curvature > 0)) return false;
      const double alpha = rs[j] / curvature;
      double* xj = sc.x.data() + j * p;
      double* rj = r + j * p;
      double next = 0;
      for (int64_t i = 0; i < p; ++i) {
        xj[i] += alpha * d[i];
        rj[i] -= alpha * hj[i];
        next += rj[i] * rj[i];
      }
      const double beta = next / rs[j];
      for (int64_t i = 0; i < p; ++i) d[i] = rj[i] + beta * d[i];
      rs[j] = next;
    }
  }
}

// x <- (L D Lᵀ)⁻¹ x for the factors above.
void SolveShifted(int64_t p, const double* l, const double* piv, double* x) {
  for (int64_t i = 1; i < p; ++i) x[i] -= l[i - 1] * x[i - 1];
  x[p - 1] /= piv[p - 1];
  for (int64_t i = p - 2; i >= 0; --i) x[i] = x[i] / piv[i] - l[i] * x[i + 1];
}

template <typename T>
void SolveOne(const Lapack<double>& la, int64_t m, int64_t n, int64_t c, const T* a,
              const T* basis, const T* s, const T* rhs, double margin, bool gap_checked, T* z,
              int32_t* ok, SolveScratch& sc) {
  const int64_t p = std::min(m, n);
  std::fill(z, z + c * p, T(0));
  *ok = 1;
  if (!AllFinite(a, m * n) || !AllFinite(basis, c * p) || !AllFinite(s, c) ||
      !AllFinite(rhs, c * p)) {
    std::fill(z, z + c * p, std::numeric_limits<T>::quiet_NaN());
    return;
  }
  double top = 0, bottom = std::numeric_limits<double>::infinity();
  for (int64_t j = 0; j < c; ++j) {
    const double sj = std::abs(double(s[j]));
    if (sj > 0) {
      top = std::max(top, sj * sj);
      bottom = std::min(bottom, sj * sj);
    }
  }
  if (top == 0) return;  // no shift: every z_j is 0
  sc.b.assign(basis, basis + c * p);

  // Where the caller has checked the gap, conjugate gradients first, while their passes over A
  // (4·q·p flops per row and iteration) cost less than the Gram matrix and its reduction.
  if (gap_checked) {
    const int64_t q = std::max(m, n);
    int64_t rows = 0;
    for (int64_t j = 0; j < c; ++j) rows += std::abs(double(s[j])) > 0;
    // Flop equivalents: the Gram matrix (AVX2 tiles) and the reduction (level 2, ~3x slower).
    const double direct = double(q) * double(p) * double(p) + 4.0 * double(p) * double(p * p);
    const int64_t budget = std::min<int64_t>(
        kCgMaxIters, static_cast<int64_t>(direct / (4.0 * double(q * p * rows))));
    if (budget >= kCgMinIters &&
        ShiftedCg(la, m, n, c, a, sc.b.data(), s, rhs, kCgTolerance, budget, sc)) {
      for (int64_t i = 0; i < c * p; ++i) z[i] = static_cast<T>(sc.x[i]);
      *ok = 2;
      return;
    }
  }

  // G, scaled to a largest diagonal entry of 1 (the tridiagonal reduction expects |G_ij| <= 1).
  GramOfShortSide(la, a, m, n, sc.rows, sc.g);
  double* g = sc.g.data();
  double scale = 0;
  for (int64_t i = 0; i < p; ++i) scale = std::max(scale, g[i * p + i]);
  if (scale == 0) scale = 1;
  const double inv_scale = 1.0 / scale;
  for (int64_t i = 0; i < p * p; ++i) g[i] *= inv_scale;

  // H = G − Bᵀ Z − Zᵀ B, Z = B G − ½ (B G Bᵀ) B. Column-major views: B is p x c, B G is p x c.
  sc.bg.resize(c * p);
  sc.bgb.resize(c * c);
  sc.outer.resize(p * p);
  double* b = sc.b.data();
  double* bg = sc.bg.data();
  blas::Gemm(la, 'N', 'N', p, c, p, 1.0, g, p, b, p, 0.0, bg, p);  // (G B')
  blas::Gemm(la, 'T', 'N', c, c, p, 1.0, b, p, bg, p, 0.0, sc.bgb.data(), c);
  blas::Gemm(la, 'N', 'N', p, c, c, -0.5, b, p, sc.bgb.data(), c, 1.0, bg, p);  // Z'
  double* outer = sc.outer.data();
  blas::Gemm(la, 'N', 'T', p, p, c, 1.0, b, p, bg, p, 0.0, outer, p);  // Bᵀ Z, column-major
  for (int64_t i = 0; i < p; ++i) {
    for (int64_t j = 0; j < p; ++j) g[i * p + j] -= outer[i * p + j] + outer[j * p + i];
  }

  // H = Q T Qᵀ; every eigenvalue of T at least margin·s_max² below the smallest shift.
  sc.d.resize(p);
  sc.e.resize(p);
  sc.tau.resize(p);
  sc.work.resize(2 * p);
  double* d = sc.d.data();
  double* e = sc.e.data();
  ReduceToTridiagonal(p, g, d, e, sc.tau.data(), sc.work.data());
  sc.l.resize(p);
  sc.piv.resize(p);
  if (!FactorShifted(p, d, e, (bottom - margin * top) * inv_scale, sc.l.data(), sc.piv.data())) {
    *ok = 0;
    return;
  }

  // z_j = Q (s_j² − T)⁻¹ Qᵀ r_j; H was scaled by 1/scale, so the solutions are too.
  sc.x.assign(rhs, rhs + c * p);
  double* x = sc.x.data();
  ApplyReflectors(p, c, g, sc.tau.data(), true, x);
  for (int64_t j = 0; j < c; ++j) {
    double* xj = x + j * p;
    const double sj = std::abs(double(s[j]));
    if (!(sj > 0)) {
      std::fill(xj, xj + p, 0.0);
      continue;
    }
    if (!FactorShifted(p, d, e, sj * sj * inv_scale, sc.l.data(), sc.piv.data())) {
      *ok = 0;
      return;
    }
    SolveShifted(p, sc.l.data(), sc.piv.data(), xj);
  }
  ApplyReflectors(p, c, g, sc.tau.data(), false, x);
  for (int64_t i = 0; i < c * p; ++i) z[i] = static_cast<T>(x[i] * inv_scale);
}

}  // namespace

template <typename T>
void ShiftedGramSolve(const LapackTable& lapack, int64_t batch, int64_t m, int64_t n, int64_t c,
                      const T* a, const T* basis, const T* s, const T* rhs, double margin,
                      bool gap_checked, T* z, int32_t* ok, const Scheduler& schedule,
                      int64_t workers) {
  const int64_t p = std::min(m, n);
  // Each thread keeps its workspace (at most a few MiB at p = kShiftedSolveMaxSide).
  // One BLAS thread per member, as in the truncated SVD's driver: these products are small, and
  // OpenBLAS's own threads would compete with XLA's.
  ParallelFor(batch, workers, schedule, [&](int64_t, int64_t i) {
    thread_local SolveScratch sc;
    const OneBlasThread pin(lapack.set_threads_local);
    SolveOne(lapack.f64, m, n, c, a + i * m * n, basis + i * c * p, s + i * c, rhs + i * c * p,
             margin, gap_checked, z + i * c * p, ok + i, sc);
  });
}

template void ShiftedGramSolve<float>(const LapackTable&, int64_t, int64_t, int64_t, int64_t,
                                      const float*, const float*, const float*, const float*,
                                      double, bool, float*, int32_t*, const Scheduler&, int64_t);
template void ShiftedGramSolve<double>(const LapackTable&, int64_t, int64_t, int64_t, int64_t,
                                       const double*, const double*, const double*, const double*,
                                       double, bool, double*, int32_t*, const Scheduler&, int64_t);

}  // namespace rrae_fast::cpu
