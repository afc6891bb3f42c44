// Gram path (see gram_svd.h).
//
// With p = min(m, n) and q = max(m, n), let Y be the q x p matrix A (m >= n) or Aᵀ (m < n), so
// that G = Yᵀ Y is the p x p Gram matrix of the smaller side. The eigenpairs (λ_j, e_j) of G give
// the SVD of A: σ_j = sqrt(λ_j), the factor on the small side is e_j and the other one is
// Y e_j / σ_j. Everything below runs in float64 on data that fits in cache:
//   1. G = Yᵀ Y over blocks of rows of Y (AVX2 tiles of its upper triangle, else GEMM), then
//      scaled to a largest diagonal of 1;
//   2. Householder reduction of G to a tridiagonal T = Qᵀ G Q;
//   3. the top-k eigenvalues of T: by multisection on Sturm counts until each is alone in its
//      bracket, then Newton's method on det(T − x·I), where k is at most 3p/4 (UseBisection),
//      else all of them by the root-free implicit QL iteration;
//   4. the top-k eigenvectors of T by inverse iteration on the pivoted LU factors of T - λI,
//      re-orthogonalised within clusters of close eigenvalues, each accepted on its residual,
//      and their orthogonality checked;
//   5. back-transformation by Q, then W = Y E by GEMM;
//   6. the columns of W normalised; those whose σ_j is too small for the eigenvectors'
//      accuracy to make them orthogonal get modified Gram–Schmidt, repeated while a pass
//      removes more than half of a column, and a column of negligible norm (σ_j ≈ 0) is
//      replaced by a unit vector orthogonal to the others.
//
// Why not LAPACK: its routines for these sizes spend most of their time outside arithmetic.
// One thread, 64 x 32 float32: sgesdd 143 µs, dsyevd on the 32 x 32 Gram matrix 83 µs; this
// path did the whole SVD for k = 8 in ~24 µs (stages, µs: Gram 2, tridiagonal 5, eigenvalues
// 11, eigenvectors 4, the rest 3), and 200 x 64 at k = 2 in ~60 µs (Gram 20, tridiagonal 22,
// eigenvalues 8, the rest 10), before stage 3 took the Newton passes (eigenvalues ~2 and ~3).
// Stages 1, 2, 3 and 5 have AVX2 + FMA builds of their loops (avx2.h). Where the path is
// preferred: PreferGram in truncated_svd.cc.
#include "cpu/gram_svd.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>

#include "cpu/avx2.h"
#include "cpu/blas.h"

namespace rrae_fast::cpu {

namespace {

constexpr double kEps = std::numeric_limits<double>::epsilon();
// Width, relative to T's Gershgorin bound, below which a bisection bracket is finished.
constexpr double kBisectionTolerance = 4 * kEps;

double Dot(const double* x, const double* y, int64_t len) {
  double acc = 0;
#pragma omp simd reduction(+ : acc)
  for (int64_t i = 0; i < len; ++i) acc += x[i] * y[i];
  return acc;
}

void Axpy(double alpha, const double* x, double* y, int64_t len) {
  for (int64_t i = 0; i < len; ++i) y[i] += alpha * x[i];
}

// Scales x to unit 2-norm; false if it is zero or not finite.
bool Normalize(double* x, int64_t len) {
  double big = 0;
  for (int64_t i = 0; i < len; ++i) big = std::max(big, std::abs(x[i]));
  if (!(big > 0) || !std::isfinite(big)) return false;
  const double inv_big = 1.0 / big;
  for (int64_t i = 0; i < len; ++i) x[i] *= inv_big;
  const double inv = 1.0 / std::sqrt(Dot(x, x, len));
  for (int64_t i = 0; i < len; ++i) x[i] *= inv;
  return true;
}

// x -= Σ_c (b_c · x) b_c over the rows b_c of `basis` (count x len, orthonormal): classical
// Gram–Schmidt within groups of four rows (one pass over x for their four products, one for
// the update), modified across groups. Callers repeat it where one pass may not be enough.
void Project(const double* basis, int64_t count, double* x, int64_t len) {
  int64_t c = 0;
  for (; c + 4 <= count; c += 4) {
    const double* b0 = basis + c * len;
    const double* b1 = b0 + len;
    const double* b2 = b1 + len;
    const double* b3 = b2 + len;
    double d0 = 0, d1 = 0, d2 = 0, d3 = 0;
#pragma omp simd reduction(+ : d0, d1, d2, d3)
    for (int64_t i = 0; i < len; ++i) {
      const double xi = x[i];
      d0 += b0[i] * xi;
      d1 += b1[i] * xi;
      d2 += b2[i] * xi;
      d3 += b3[i] * xi;
    }
#pragma omp simd
    for (int64_t i = 0; i < len; ++i) x[i] -= d0 * b0[i] + d1 * b1[i] + d2 * b2[i] + d3 * b3[i];
  }
  for (; c < count; ++c) {
    const double* b = basis + c * len;
    Axpy(-Dot(b, x, len), b, x, len);
  }
}

// ------------------------------------------------------------------------------------------
// 1. The Gram matrix
// ------------------------------------------------------------------------------------------

// Rows of Y converted to float64 per block: enough to amortise a GEMM call, few enough to stay
// in cache (~256 KiB).
int64_t RowBlock(int64_t p, int64_t q) { return std::min(q, std::max<int64_t>(8, 32768 / p)); }

// The block of rows of Y in sc.rows, from its first 64-byte boundary: the Gram tiles read its
// rows as whole cache lines (200 x 64: 20 µs, against 25–30 from the other offsets).
double* RowBuffer(GramScratch& sc) {
  const auto address = reinterpret_cast<std::uintptr_t>(sc.rows.data());
  return sc.rows.data() + ((64 - address % 64) % 64) / sizeof(double);
}

// Rows [r0, r0 + count) of Y as float64 into out (count x p, row-major; column-major p x count).
template <typename T>
void LoadRows(const T* a, int64_t m, int64_t n, int64_t r0, int64_t count, double* out) {
  if (m >= n) {  // Y = A
    for (int64_t t = 0; t < count; ++t) {
      const T* src = a + (r0 + t) * n;
      double* dst = out + t * n;
      for (int64_t c = 0; c < n; ++c) dst[c] = src[c];
    }
  } else {  // Y = Aᵀ: row r of Y is column r of A
    for (int64_t i = 0; i < m; ++i) {
      const T* src = a + i * n + r0;
      for (int64_t t = 0; t < count; ++t) out[t * m + i] = src[t];
    }
  }
}

// g (p x p, row-major) += the upper triangle's 4 x 8 tiles of Bᵀ B for the count x p row-major
// block B (p a multiple of 8), each tile's 8 accumulators in registers over all of B's rows;
// the tiles below the diagonal are left alone.
RRAE_FAST_AVX2 void GramTilesAvx2(int64_t p, int64_t count, const double* rows, bool first,
                                  double* g) {
  for (int64_t i0 = 0; i0 < p; i0 += 4) {
    for (int64_t j0 = i0 / 8 * 8; j0 < p; j0 += 8) {
      __m256d acc[4][2];
      for (int i = 0; i < 4; ++i) {
        acc[i][0] = first ? _mm256_setzero_pd() : _mm256_loadu_pd(g + (i0 + i) * p + j0);
        acc[i][1] = first ? _mm256_setzero_pd() : _mm256_loadu_pd(g + (i0 + i) * p + j0 + 4);
      }
      const double* y = rows;
      for (int64_t t = 0; t < count; ++t, y += p) {
        const __m256d b0 = _mm256_loadu_pd(y + j0), b1 = _mm256_loadu_pd(y + j0 + 4);
        for (int i = 0; i < 4; ++i) {
          const __m256d a = _mm256_broadcast_sd(y + i0 + i);
          acc[i][0] = _mm256_fmadd_pd(a, b0, acc[i][0]);
          acc[i][1] = _mm256_fmadd_pd(a, b1, acc[i][1]);
        }
      }
      for (int i = 0; i < 4; ++i) {
        _mm256_storeu_pd(g + (i0 + i) * p + j0, acc[i][0]);
        _mm256_storeu_pd(g + (i0 + i) * p + j0 + 4, acc[i][1]);
      }
    }
  }
}

// g (p x p) = Yᵀ Y in float64, over blocks of rows of Y: by the tiles above where p is a
// multiple of 8 and AVX2 runs (about half the arithmetic of a GEMM; the lower triangle is then
// mirrored), else one GEMM per block. Where Y is one block, it is left in sc.rows for MultiplyY.
template <typename T>
void GramMatrix(const Lapack<double>& la, const T* a, int64_t m, int64_t n, GramScratch& sc) {
  const int64_t p = std::min(m, n), q = std::max(m, n), block = RowBlock(p, q);
  double* rows = RowBuffer(sc);
  double* g = sc.g.data();
  const bool tiles = p % 8 == 0 && Avx2Available();
  for (int64_t r0 = 0; r0 < q; r0 += block) {
    const int64_t count = std::min(block, q - r0);
    LoadRows(a, m, n, r0, count, rows);
    if (tiles) {
      GramTilesAvx2(p, count, rows, r0 == 0, g);
      continue;
    }
    // Column-major: G (p x p) += B Bᵀ with B = rows (p x count).
    blas::Gemm(la, 'N', 'T', p, p, count, 1.0, rows, p, rows, p, r0 == 0 ? 0.0 : 1.0, g, p);
  }
  if (tiles) {
    for (int64_t i = 1; i < p; ++i) {
      for (int64_t j = 0; j < i; ++j) g[i * p + j] = g[j * p + i];
    }
  }
}

// ------------------------------------------------------------------------------------------
// 2. Householder tridiagonalisation
// ------------------------------------------------------------------------------------------

// w (len) = S v for the symmetric len x len matrix S held in full, rows `ld` apart, as
// Sᵀ v = Σ_r v_r S[r][.]: whole-row updates of w, four rows per pass, no reductions.
__attribute__((always_inline)) inline void SymmetricTimes(int64_t len, const double* s, int64_t ld,
                                                          const double* v, double* w) {
  std::fill(w, w + len, 0.0);
  int64_t r = 0;
  for (; r + 4 <= len; r += 4) {
    const double* s0 = s + r * ld;
    const double* s1 = s0 + ld;
    const double* s2 = s1 + ld;
    const double* s3 = s2 + ld;
    const double c0 = v[r], c1 = v[r + 1], c2 = v[r + 2], c3 = v[r + 3];
#pragma omp simd
    for (int64_t j = 0; j < len; ++j)
      w[j] += (c0 * s0[j] + c1 * s1[j]) + (c2 * s2[j] + c3 * s3[j]);
  }
  for (; r < len; ++r) {
    const double* row = s + r * ld;
    const double c = v[r];
#pragma omp simd
    for (int64_t j = 0; j < len; ++j) w[j] += c * row[j];
  }
}

// Turns x (len >= 2 entries: a row's part right of the diagonal) into the Householder vector v
// (v[0] = 1) of the reflector I − τ v vᵀ that maps x onto β·e_0; *tau = τ, *beta = β. False,
// with τ = 0 and β = x[0], where x[1 ..] is zero already.
__attribute__((always_inline)) inline bool MakeReflector(double* x, int64_t len, double* tau,
                                                         double* beta) {
  const double alpha = x[0];
  // G is scaled (|G_ij| <= 1, ‖G‖ <= p): plain sums of squares neither overflow nor lose
  // anything that matters to underflow.
  double xnorm2 = 0;
#pragma omp simd reduction(+ : xnorm2)
  for (int64_t j = 1; j < len; ++j) xnorm2 += x[j] * x[j];
  if (xnorm2 == 0) {
    *tau = 0;
    *beta = alpha;
    return false;
  }
  const double b = -std::copysign(std::sqrt(alpha * alpha + xnorm2), alpha);
  const double inv = 1.0 / (alpha - b);
#pragma omp simd
  for (int64_t j = 1; j < len; ++j) x[j] *= inv;
  x[0] = 1;
  *tau = (b - alpha) / b;
  *beta = b;
  return true;
}

// Reduces the symmetric p x p matrix g (held in full) to the tridiagonal (d, e), e[i] coupling
// i and i + 1 (e[p - 1] = 0). Reflector i is I − τ_i v vᵀ on coordinates i + 1 .. p − 1 with
// v = g[i][i + 1 ..] (its first entry set to 1); Q = H_0 H_1 ... H_{p−3}.
//
// Step i updates the trailing block S = G[i+1 .., i+1 ..] to S − v wᵀ − w vᵀ, with
// w = τ S v − ½ τ² (vᵀ S v) v: first S's first row, from which the next reflector is made, then
// each other row followed at once by its product with that reflector (the next step's S v), so
// that S is swept once per step. Rows are updated in full, not as a triangle (twice the
// arithmetic, in whole rows that vectorise), except their first entry, which no later step
// reads. w: 2p scratch.
__attribute__((always_inline)) inline void TridiagonalizeBody(int64_t p, double* g, double* d,
                                                              double* e, double* tau, double* w) {
  double* w_next = w + p;
  bool reflect = false;  // reflector i is not the identity
  bool product = false;  // w holds S v for it
  if (p >= 3) {
    d[0] = g[0];
    reflect = MakeReflector(g + 1, p - 1, &tau[0], &e[0]);
  }
  for (int64_t i = 0; i + 2 < p; ++i) {
    const int64_t len = p - i - 1;
    const double* v = g + i * p + i + 1;
    double* sub = g + (i + 1) * p + i + 1;  // S: len x len, rows p apart
    const bool more = i + 3 < p;            // a reflector i + 1 follows
    if (!reflect) {                         // S stays as it is
      d[i + 1] = sub[0];
      if (more) reflect = MakeReflector(sub + 1, len - 1, &tau[i + 1], &e[i + 1]);
      product = false;
      continue;
    }
    if (!product) SymmetricTimes(len, sub, p, v, w);
    const double t = tau[i];
    double wv = 0;
#pragma omp simd reduction(+ : wv)
    for (int64_t j = 0; j < len; ++j) {
      w[j] *= t;
      wv += w[j] * v[j];
    }
    const double half = -0.5 * t * wv;
#pragma omp simd
    for (int64_t j = 0; j < len; ++j) w[j] += half * v[j];
    const double v0 = v[0], w0 = w[0];
#pragma omp simd
    for (int64_t j = 0; j < len; ++j) sub[j] -= v0 * w[j] + w0 * v[j];
    d[i + 1] = sub[0];
    const bool next = more && MakeReflector(sub + 1, len - 1, &tau[i + 1], &e[i + 1]);
    const double* vn = sub + 1;  // reflector i + 1, on S's columns 1 ..
    int64_t r = 1;
    if (next) {  // four rows per pass over w_next, which gathers Σ_r vn_r S[r][.] = S vn
      std::fill(w_next, w_next + len - 1, 0.0);
      for (; r + 4 <= len; r += 4) {
        double* row0 = sub + r * p;
        double* row1 = row0 + p;
        double* row2 = row1 + p;
        double* row3 = row2 + p;
        const double v0r = v[r], v1r = v[r + 1], v2r = v[r + 2], v3r = v[r + 3];
        const double w0r = w[r], w1r = w[r + 1], w2r = w[r + 2], w3r = w[r + 3];
        const double c0 = vn[r - 1], c1 = vn[r], c2 = vn[r + 1], c3 = vn[r + 2];
#pragma omp simd
        for (int64_t j = 1; j < len; ++j) {
          const double x0 = row0[j] - (v0r * w[j] + w0r * v[j]);
          const double x1 = row1[j] - (v1r * w[j] + w1r * v[j]);
          const double x2 = row2[j] - (v2r * w[j] + w2r * v[j]);
          const double x3 = row3[j] - (v3r * w[j] + w3r * v[j]);
          row0[j] = x0;
          row1[j] = x1;
          row2[j] = x2;
          row3[j] = x3;
          w_next[j - 1] += (c0 * x0 + c1 * x1) + (c2 * x2 + c3 * x3);
        }
      }
    }
    for (; r < len; ++r) {
      double* row = sub + r * p;
      const double vr = v[r], wr = w[r];
      if (next) {
        const double c = vn[r - 1];
#pragma omp simd
        for (int64_t j = 1; j < len; ++j) {
          const double x = row[j] - (vr * w[j] + wr * v[j]);
          row[j] = x;
          w_next[j - 1] += c * x;
        }
      } else {
#pragma omp simd
        for (int64_t j = 1; j < len; ++j) row[j] -= vr * w[j] + wr * v[j];
      }
    }
    std::swap(w, w_next);
    reflect = next;
    product = next;
  }
  if (p >= 2) {
    d[p - 2] = g[(p - 2) * p + p - 2];
    e[p - 2] = g[(p - 2) * p + p - 1];
    tau[p - 2] = 0;
  }
  d[p - 1] = g[(p - 1) * p + p - 1];
  e[p - 1] = 0;
  tau[p - 1] = 0;
}

RRAE_FAST_AVX2 void TridiagonalizeAvx2(int64_t p, double* g, double* d, double* e, double* tau,
                                       double* w) {
  TridiagonalizeBody(p, g, d, e, tau, w);
}

void TridiagonalizeGeneric(int64_t p, double* g, double* d, double* e, double* tau, double* w) {
  TridiagonalizeBody(p, g, d, e, tau, w);
}

void Tridiagonalize(int64_t p, double* g, double* d, double* e, double* tau, double* w) {
  if (Avx2Available()) {
    TridiagonalizeAvx2(p, g, d, e, tau, w);
  } else {
    TridiagonalizeGeneric(p, g, d, e, tau, w);
  }
}

// The rows of x (k x p, a vector per row) <- Q times them (kTransposed: Qᵀ times them), one
// reflector at a time (for Q the last first), four rows per pass over the reflector.
template <bool kTransposed>
__attribute__((always_inline)) inline void BackTransformBody(int64_t p, int64_t k, const double* g,
                                                             const double* tau, double* x) {
  for (int64_t step = 0; step + 3 <= p; ++step) {
    const int64_t i = kTransposed ? step : p - 3 - step;
    if (tau[i] == 0) continue;
    const double* v = g + i * p + i + 1;
    const int64_t len = p - i - 1;
    const double t = tau[i];
    int64_t j = 0;
    for (; j + 4 <= k; j += 4) {
      double* x0 = x + j * p + i + 1;
      double* x1 = x0 + p;
      double* x2 = x1 + p;
      double* x3 = x2 + p;
      double c0 = 0, c1 = 0, c2 = 0, c3 = 0;
#pragma omp simd reduction(+ : c0, c1, c2, c3)
      for (int64_t r = 0; r < len; ++r) {
        c0 += v[r] * x0[r];
        c1 += v[r] * x1[r];
        c2 += v[r] * x2[r];
        c3 += v[r] * x3[r];
      }
      c0 *= t;
      c1 *= t;
      c2 *= t;
      c3 *= t;
#pragma omp simd
      for (int64_t r = 0; r < len; ++r) {
        x0[r] -= c0 * v[r];
        x1[r] -= c1 * v[r];
        x2[r] -= c2 * v[r];
        x3[r] -= c3 * v[r];
      }
    }
    for (; j < k; ++j) {
      double* xj = x + j * p + i + 1;
      double c = 0;
#pragma omp simd reduction(+ : c)
      for (int64_t r = 0; r < len; ++r) c += v[r] * xj[r];
      c *= t;
#pragma omp simd
      for (int64_t r = 0; r < len; ++r) xj[r] -= c * v[r];
    }
  }
}

template <bool kTransposed>
RRAE_FAST_AVX2 void BackTransformAvx2(int64_t p, int64_t k, const double* g, const double* tau,
                                      double* x) {
  BackTransformBody<kTransposed>(p, k, g, tau, x);
}

template <bool kTransposed>
void BackTransformGeneric(int64_t p, int64_t k, const double* g, const double* tau, double* x) {
  BackTransformBody<kTransposed>(p, k, g, tau, x);
}

template <bool kTransposed = false>
void BackTransform(int64_t p, int64_t k, const double* g, const double* tau, double* x) {
  if (Avx2Available()) {
    BackTransformAvx2<kTransposed>(p, k, g, tau, x);
  } else {
    BackTransformGeneric<kTransposed>(p, k, g, tau, x);
  }
}

// ------------------------------------------------------------------------------------------
// 3. Eigenvalues of T
// ------------------------------------------------------------------------------------------

// Eigenvalues of [[a, b], [b, c]] without cancellation in the smaller one.
void Eigenvalues2x2(double a, double b, double c, double* rt1, double* rt2) {
  const double sum = a + c, half_diff = 0.5 * (a - c);
  const double root = std::sqrt(half_diff * half_diff + b * b);
  const double big = std::abs(a) > std::abs(c) ? a : c, small = std::abs(a) > std::abs(c) ? c : a;
  if (sum == 0) {
    *rt1 = root;
    *rt2 = -root;
    return;
  }
  *rt1 = 0.5 * sum + std::copysign(root, sum);   // the eigenvalue of larger magnitude
  *rt2 = (big / *rt1) * small - (b / *rt1) * b;  // det / rt1
}

// Eigenvalues of the symmetric tridiagonal (d, e) into d (unordered) by the root-free implicit
// QL iteration of Pal, Walker and Kahan (the variant in LAPACK's dsterf): it works on the squared
// couplings e2 (destroyed), so a rotation costs no square root and, as written here, one
// division on its critical path. False if one eigenvalue takes more than 60 sweeps. T is scaled
// (‖T‖ <= p), so squares neither overflow nor lose what matters to underflow.
bool TridiagonalEigenvalues(int64_t p, double* d, double* e2) {
  for (int64_t i = 0; i < p; ++i) e2[i] *= e2[i];
  const double eps2 = kEps * kEps;
  int64_t l = 0;
  int sweeps = 0;
  while (l < p) {
    int64_t mm = l;  // first negligible coupling at or after l
    for (; mm + 1 < p; ++mm) {
      if (e2[mm] <= eps2 * std::max(std::abs(d[mm] * d[mm + 1]), 1e-4)) break;
    }
    if (mm + 1 < p) e2[mm] = 0;
    if (mm == l) {  // d[l] has converged
      ++l;
      sweeps = 0;
      continue;
    }
    if (mm == l + 1) {  // a 2 x 2 block: its eigenvalues in closed form
      Eigenvalues2x2(d[l], std::sqrt(e2[l]), d[l + 1], &d[l], &d[l + 1]);
      e2[l] = 0;
      l += 2;
      sweeps = 0;
      continue;
    }
    if (++sweeps > 60) return false;
    // Wilkinson shift from the leading 2 x 2.
    const double rte = std::sqrt(e2[l]);
    double sigma = (d[l + 1] - d[l]) / (2.0 * rte);
    sigma = d[l] - rte / (sigma + std::copysign(std::sqrt(sigma * sigma + 1.0), sigma));
    double c = 1, s = 0;
    double gamma = d[mm] - sigma;
    double pp = gamma * gamma;
    for (int64_t i = mm - 1; i >= l; --i) {
      const double bb = e2[i];
      const double r = pp + bb;
      if (i != mm - 1) e2[i + 1] = s * r;
      const double old_c = c;
      const double inv_r = 1.0 / r;
      // r / pp (for the next pp = γ² / c = γ² · r / pp) does not wait for this step's division.
      const double r_over_pp = pp != 0 ? r / pp : 0;
      c = pp * inv_r;
      s = bb * inv_r;
      const double old_gamma = gamma;
      const double alpha = d[i];
      gamma = c * (alpha - sigma) - s * old_gamma;
      d[i + 1] = old_gamma + (alpha - gamma);
      pp = c != 0 ? gamma * gamma * r_over_pp : old_c * bb;
    }
    e2[l] = s * pp;
    d[l] = sigma + gamma;
  }
  return true;
}

// Points per pass of the multisection: four AVX2 vectors, whose steps of the recurrence below
// overlap in its latency; more would cost more per pass than they give.
constexpr int kSturmPoints = 16;

// The minors below run on T / scale (diagonal ds, squared couplings e2s), where every
// entry is at most ~2 in magnitude and diagonal entries below kNegligible are zero; points are
// rounded the same way. The recurrence's values are brought back towards 1 by kRescale (a
// power of two, so exactly) every second step when outside [1 / kRescale, kRescale]. Between
// two checks a value moves by less than 2^240 either way: a step multiplies by at most
// |ds_i − x| + e2s ≤ ~8, or divides by at most 2^112 (d − x is zero or at least the rounding
// of the larger of two entries ≥ kNegligible) or 2^106 (a cancellation ends at its rounding, or
// at zero, after which the next value is −e2s · the one before it, or zero at a split, see
// below), so values stay in the normal range.
constexpr double kRescale = 0x1p400;
constexpr double kNegligible = 0x1p-60;

// Lanes of one Newton pass (below): two AVX2 vectors, whose recurrences overlap in its latency.
constexpr int kNewtonLanes = 8;

// For `kLanes` points x: count[t] = the number of eigenvalues of T below x[t] (or at it), and
// where kRatio also ratio[t] = f(x) / f'(x) for f(x) = det(T − x·I).
//
// The pivots of the LDLᵀ factorisation of T − x·I are q_i = p_i / p_{i−1}, the ratios of the
// leading principal minors p_0 = 1, p_{i+1} = (d_i − x) p_i − e2_{i−1} p_{i−1}, and the count is
// the number of negative pivots, i.e. of sign changes (sign bits, so ±0 too) from one minor to
// the next. The minors need no division (the pivots wait on one per step, whose throughput had
// bounded the count) and carry the same rounding: fl(a p_i − b p_{i−1}) =
// (a − b (1 + δ) / q_i)(1 + δ') p_i is the pivot recurrence on relatively perturbed data. A zero
// minor is followed by −e2 · (the one before it), which counts one change over the two steps
// whatever the zero's sign, as the division form's pivot −pivmin does; where T splits (e2 = 0)
// the zero minor is first replaced by −kNegligible · (the one before it), the division form's
// pivot, so that the later ones are not all zero. The derivatives follow from p'_0 = 0,
// p'_{i+1} = (d_i − x) p'_i − p_i − e2_{i−1} p'_{i−1}, rescaled with the minors (every value of
// the four checked, so that they stay in range too; the ratio does not see the scale). At a
// split the zero minor's replacement leaves its derivative as it was: the ratio is then only a
// guess, which the caller's bracket checks.
template <int kLanes, bool kRatio>
RRAE_FAST_AVX2 inline void MinorsAvx2(int64_t p, const double* ds, const double* e2s,
                                      const double* x, double* count, double* ratio) {
  constexpr int kVectors = kLanes / 4;
  const __m256d one = _mm256_set1_pd(1.0), up = _mm256_set1_pd(kRescale);
  const __m256d down = _mm256_set1_pd(1 / kRescale), sign = _mm256_set1_pd(-0.0);
  __m256d xv[kVectors], prev[kVectors], cur[kVectors], dprev[kVectors], dcur[kVectors];
  __m256i c[kVectors];
  const __m256d d0 = _mm256_set1_pd(ds[0]);
  for (int v = 0; v < kVectors; ++v) {
    xv[v] = _mm256_loadu_pd(x + 4 * v);
    prev[v] = one;
    cur[v] = _mm256_sub_pd(d0, xv[v]);
    dprev[v] = _mm256_setzero_pd();
    dcur[v] = _mm256_set1_pd(-1.0);
    c[v] = _mm256_srli_epi64(_mm256_castpd_si256(cur[v]), 63);
  }
  for (int64_t i = 1; i < p; ++i) {
    if (e2s[i - 1] == 0) {  // a split: no zero minor may carry over it
      for (int v = 0; v < kVectors; ++v) {
        alignas(32) double pc[4], pp[4];
        alignas(32) int64_t pk[4];
        _mm256_store_pd(pc, cur[v]);
        _mm256_store_pd(pp, prev[v]);
        _mm256_store_si256(reinterpret_cast<__m256i*>(pk), c[v]);
        for (int t = 0; t < 4; ++t) {
          if (pc[t] == 0) {
            pk[t] += std::signbit(pc[t]) == std::signbit(pp[t]);
            pc[t] = -kNegligible * pp[t];
          }
        }
        cur[v] = _mm256_load_pd(pc);
        c[v] = _mm256_load_si256(reinterpret_cast<const __m256i*>(pk));
      }
    }
    const __m256d di = _mm256_set1_pd(ds[i]), bi = _mm256_set1_pd(e2s[i - 1]);
    for (int v = 0; v < kVectors; ++v) {
      const __m256d a = _mm256_sub_pd(di, xv[v]);
      const __m256d next = _mm256_fmsub_pd(a, cur[v], _mm256_mul_pd(bi, prev[v]));
      if constexpr (kRatio) {
        const __m256d dnext = _mm256_fmsub_pd(a, dcur[v], _mm256_fmadd_pd(bi, dprev[v], cur[v]));
        dprev[v] = dcur[v];
        dcur[v] = dnext;
      }
      const __m256i flip = _mm256_castpd_si256(_mm256_xor_pd(next, cur[v]));
      c[v] = _mm256_add_epi64(c[v], _mm256_srli_epi64(flip, 63));
      prev[v] = cur[v];
      cur[v] = next;
    }
    if (i % 2 == 0) {
      for (int v = 0; v < kVectors; ++v) {
        __m256d big =
            _mm256_max_pd(_mm256_andnot_pd(sign, cur[v]), _mm256_andnot_pd(sign, prev[v]));
        if constexpr (kRatio) {
          big = _mm256_max_pd(big, _mm256_max_pd(_mm256_andnot_pd(sign, dcur[v]),
                                                 _mm256_andnot_pd(sign, dprev[v])));
        }
        __m256d f = _mm256_blendv_pd(one, up, _mm256_cmp_pd(big, down, _CMP_LT_OQ));
        f = _mm256_blendv_pd(f, down, _mm256_cmp_pd(big, up, _CMP_GT_OQ));
        cur[v] = _mm256_mul_pd(cur[v], f);
        prev[v] = _mm256_mul_pd(prev[v], f);
        if constexpr (kRatio) {
          dcur[v] = _mm256_mul_pd(dcur[v], f);
          dprev[v] = _mm256_mul_pd(dprev[v], f);
        }
      }
    }
  }
  for (int v = 0; v < kVectors; ++v) {
    alignas(32) int64_t pk[4];
    _mm256_store_si256(reinterpret_cast<__m256i*>(pk), c[v]);
    for (int t = 0; t < 4; ++t) count[4 * v + t] = double(pk[t]);
    if constexpr (kRatio) _mm256_storeu_pd(ratio + 4 * v, _mm256_div_pd(cur[v], dcur[v]));
  }
}

// The same without AVX2.
template <int kLanes, bool kRatio>
void MinorsGeneric(int64_t p, const double* ds, const double* e2s, const double* x, double* count,
                   double* ratio) {
  for (int t = 0; t < kLanes; ++t) {
    double prev = 1, cur = ds[0] - x[t], dprev = 0, dcur = -1;
    int64_t c = std::signbit(cur);
    for (int64_t i = 1; i < p; ++i) {
      if (e2s[i - 1] == 0 && cur == 0) {
        c += std::signbit(cur) == std::signbit(prev);
        cur = -kNegligible * prev;
      }
      const double a = ds[i] - x[t];
      const double next = a * cur - e2s[i - 1] * prev;
      if constexpr (kRatio) {
        const double dnext = a * dcur - (cur + e2s[i - 1] * dprev);
        dprev = dcur;
        dcur = dnext;
      }
      c += std::signbit(next) != std::signbit(cur);
      prev = cur;
      cur = next;
      if (i % 2 == 0) {
        double big = std::max(std::abs(cur), std::abs(prev));
        if constexpr (kRatio) big = std::max({big, std::abs(dcur), std::abs(dprev)});
        const double f = big < 1 / kRescale ? kRescale : (big > kRescale ? 1 / kRescale : 1.0);
        cur *= f;
        prev *= f;
        dcur *= f;
        dprev *= f;
      }
    }
    count[t] = double(c);
    if constexpr (kRatio) ratio[t] = cur / dcur;
  }
}

// Newton passes per group of lanes before the rest is left to the multisection.
constexpr int kNewtonPasses = 24;

// The k largest eigenvalues of (d, e) into lam, descending. Brackets start from Gershgorin's
// bounds and end narrower than kBisectionTolerance of them; the eigenvalue is the bracket's
// middle. Every Sturm count, wherever taken, narrows every bracket, and the counts at a
// bracket's ends say how many eigenvalues it holds. Two ways to place the points:
// - Multisection, while some eigenvalue shares its bracket with another: a pass evaluates
//   kSturmPoints counts, spread over the first such eigenvalues (up to kSturmPoints of them):
//   those whose brackets are still the same form one group, and each group gets an equal share
//   of the points, evenly spaced in its bracket. So one group alone gets all points (its
//   bracket 17 times narrower per pass), sixteen get one each (bisection).
// - Newton's method on det(T − x·I), kNewtonLanes eigenvalues at a time, once an eigenvalue is
//   alone in its bracket (a simple root there): each pass takes the Newton step from the last
//   point and goes a quarter of the tolerance further, so that once the steps are that small
//   the next point lands past the root and closes the bracket. A step that leaves the bracket,
//   or is not half as long as the one two passes before, takes the bracket's middle instead
//   (the safeguard of Numerical Recipes' rtsafe). Bisection gains one bit per count; Newton
//   doubles the correct digits per pass near a simple root.
// Eigenvalues left after kNewtonPasses go back to the multisection. Not sorted: ties may leave
// the middles out of order. work: 2p + 5k.
template <bool kAvx2>
__attribute__((always_inline)) inline void BisectionBody(int64_t p, int64_t k, const double* d,
                                                         const double* e, double* lam,
                                                         double* work) {
  double* ds = work;
  double* e2s = ds + p;
  double* lower = e2s + p;
  double* upper = lower + k;
  double* rank = upper + k;        // p − 1 − j: λ_j's rank from below, less one
  double* below_lower = rank + k;  // the count at lower[j] (eigenvalues below it)
  double* below_upper = below_lower + k;
  double lo = d[0], hi = d[0];
  for (int64_t i = 0; i < p; ++i) {  // e[p − 1] is not part of T
    const double radius = (i + 1 < p ? std::abs(e[i]) : 0) + (i > 0 ? std::abs(e[i - 1]) : 0);
    lo = std::min(lo, d[i] - radius);
    hi = std::max(hi, d[i] + radius);
  }
  // The counts run on T / scale, entries below kNegligible set to zero (points likewise).
  const double scale = std::max({std::abs(lo), std::abs(hi), std::numeric_limits<double>::min()});
  const double inv = 1 / scale;
  for (int64_t i = 0; i < p; ++i) {
    const double di = d[i] * inv, ei = i + 1 < p ? e[i] * inv : 0;
    ds[i] = std::abs(di) < kNegligible ? 0 : di;
    e2s[i] = ei * ei;
  }
  for (int64_t j = 0; j < k; ++j) rank[j] = double(p - 1 - j);
  const double tol = kBisectionTolerance * scale;
  std::fill(lower, lower + k, lo);
  std::fill(upper, upper + k, hi);
  std::fill(below_lower, below_lower + k, 0.0);
  std::fill(below_upper, below_upper + k, double(p));
  auto unfinished = [&](int64_t j) { return upper[j] - lower[j] > tol; };
  auto alone = [&](int64_t j) { return below_upper[j] - below_lower[j] == 1; };
  // A point where its scaled copy is (zero if negligible), so that both agree.
  auto place = [&](double at, double* x, double* xs) {
    const double scaled = at * inv;
    *xs = std::abs(scaled) < kNegligible ? 0 : scaled;
    *x = *xs * scale;
  };
  // Every bracket narrowed by the counts at n points.
  auto narrow = [&](int n, const double* x, const double* count, int64_t from) {
    for (int u = 0; u < n; ++u) {
      // λ_j (descending) lies at or above x[u] iff fewer than p − j eigenvalues lie below it.
      // (Written to store every entry, so that the loop over j vectorises.)
      const double below = count[u], at = x[u];
      for (int64_t j = from; j < k; ++j) {
        const bool above = rank[j] >= below;
        const double l = lower[j], h = upper[j], bl = below_lower[j], bu = below_upper[j];
        const bool raise = above && l < at, cut = !above && at < h;
        lower[j] = raise ? at : l;
        below_lower[j] = raise ? below : bl;
        upper[j] = cut ? at : h;
        below_upper[j] = cut ? below : bu;
      }
    }
  };
  double x[kSturmPoints], xs[kSturmPoints], count[kSturmPoints], ratio[kNewtonLanes];
  int64_t first = 0;  // eigenvalues before it are finished
  // Multisection passes over the eigenvalues that share their bracket (all of them where
  // `everyone`), until there are none. Each pass at least halves one unfinished bracket, and 64
  // halvings finish any bracket of finite numbers: the cap only guards.
  auto multisection = [&](bool everyone) {
    for (int64_t pass = 0; pass < 64 * (k + 1); ++pass) {
      while (first < k && !unfinished(first)) ++first;
      int64_t start[kSturmPoints];
      int groups = 0, members = 0;
      for (int64_t j = first; j < k && members < kSturmPoints; ++j) {
        if (!unfinished(j) || (!everyone && alone(j))) continue;
        ++members;
        const bool same = groups > 0 && lower[j] == lower[start[groups - 1]] &&
                          upper[j] == upper[start[groups - 1]];
        if (!same) start[groups++] = j;
      }
      if (groups == 0) return;
      int t = 0;
      for (int gi = 0; gi < groups; ++gi) {
        const int share = kSturmPoints / groups + (gi < kSturmPoints % groups ? 1 : 0);
        const double a = lower[start[gi]], step = (upper[start[gi]] - a) / (share + 1);
        for (int s = 1; s <= share; ++s, ++t) place(a + step * s, x + t, xs + t);
      }
      if constexpr (kAvx2) {
        MinorsAvx2<kSturmPoints, false>(p, ds, e2s, xs, count, nullptr);
      } else {
        MinorsGeneric<kSturmPoints, false>(p, ds, e2s, xs, count, nullptr);
      }
      narrow(kSturmPoints, x, count, first);
    }
  };
  multisection(false);
  // Newton, kNewtonLanes eigenvalues at a time (a lane beyond the last repeats it).
  for (int64_t j0 = first; j0 < k; j0 += kNewtonLanes) {
    int64_t lane[kNewtonLanes];
    double step1[kNewtonLanes], step2[kNewtonLanes];  // the last two steps' lengths
    for (int t = 0; t < kNewtonLanes; ++t) {
      lane[t] = std::min(j0 + t, k - 1);
      place(0.5 * (lower[lane[t]] + upper[lane[t]]), x + t, xs + t);
      step1[t] = step2[t] = upper[lane[t]] - lower[lane[t]];
    }
    for (int pass = 0; pass < kNewtonPasses; ++pass) {
      bool open = false;
      for (int t = 0; t < kNewtonLanes; ++t) open = open || unfinished(lane[t]);
      if (!open) break;
      if constexpr (kAvx2) {
        MinorsAvx2<kNewtonLanes, true>(p, ds, e2s, xs, count, ratio);
      } else {
        MinorsGeneric<kNewtonLanes, true>(p, ds, e2s, xs, count, ratio);
      }
      narrow(kNewtonLanes, x, count, first);
      for (int t = 0; t < kNewtonLanes; ++t) {
        const int64_t j = lane[t];
        const double l = lower[j], h = upper[j];
        double step = -ratio[t] * scale;
        double next = x[t] + step + std::copysign(0.25 * tol, step);
        if (!(l < next && next < h) || !(std::abs(step) <= 0.5 * step2[t])) {
          next = 0.5 * (l + h);
          step = 0.5 * (h - l);
        }
        step2[t] = step1[t];
        step1[t] = std::abs(step);
        place(next, x + t, xs + t);
      }
    }
  }
  multisection(true);
  for (int64_t j = 0; j < k; ++j) lam[j] = 0.5 * (lower[j] + upper[j]);
}

RRAE_FAST_AVX2 void BisectionAvx2(int64_t p, int64_t k, const double* d, const double* e,
                                  double* lam, double* work) {
  BisectionBody<true>(p, k, d, e, lam, work);
}

void BisectionGeneric(int64_t p, int64_t k, const double* d, const double* e, double* lam,
                      double* work) {
  BisectionBody<false>(p, k, d, e, lam, work);
}

}  // namespace

bool UseBisection(int64_t p, int64_t k) { return 4 * k <= 3 * p; }

bool TridiagonalTopEigenvalues(int64_t p, int64_t k, const double* d, const double* e,
                               bool bisection, double* lam, double* work) {
  if (bisection) {
    if (Avx2Available()) {
      BisectionAvx2(p, k, d, e, lam, work);
    } else {
      BisectionGeneric(p, k, d, e, lam, work);
    }
    // Ties may leave the middles out of order. (Sorted here, not in the AVX2 function: a call
    // from there to the generic sort returned with the upper halves of the vector registers
    // set, which slowed the scalar code after it by half.)
    std::sort(lam, lam + k, std::greater<double>());
    return true;
  }
  double* all = work;
  std::copy(d, d + p, all);
  std::copy(e, e + p, work + p);
  if (!TridiagonalEigenvalues(p, all, work + p)) return false;
  std::partial_sort(all, all + k, all + p, std::greater<double>());
  std::copy(all, all + k, lam);
  return true;
}

namespace {

// ------------------------------------------------------------------------------------------
// 4. Eigenvectors of T by inverse iteration
// ------------------------------------------------------------------------------------------

// Pivoted LU factors of T − σ_t I for up to kLuLanes shifts at once, lane t of step i at
// [i * kLuLanes + t]: U's diagonal (then its reciprocals), its two superdiagonals, L's
// multipliers, and whether rows i and i + 1 were exchanged (1 or 0). The shifts' recurrences
// are independent chains with a division each per step; side by side they overlap.
constexpr int kLuLanes = 8;

struct ShiftedLu {
  double *u0, *u1, *u2, *l, *swap;  // p x kLuLanes each
};

// Factors of T − σ_t I for every lane t; pivots smaller than `tiny` are replaced by ±tiny.
// Branch-free: the pivoting pattern near an eigenvalue is data-dependent, and mispredicted
// branches had cost about as much as the arithmetic.
__attribute__((always_inline)) inline void FactorShiftedBody(int64_t p, const double* d,
                                                             const double* e, const double* sigma,
                                                             double tiny, const ShiftedLu& f) {
  constexpr int L = kLuLanes;
  double alpha[L], beta[L];  // the current row: alpha at column i, beta at column i + 1
  for (int t = 0; t < L; ++t) {
    alpha[t] = d[0] - sigma[t];
    beta[t] = p > 1 ? e[0] : 0;
  }
  for (int64_t i = 0; i + 1 < p; ++i) {
    const double c = e[i];  // T[i + 1][i]
    const double dn = d[i + 1];
    const double b_next = i + 2 < p ? e[i + 1] : 0;
#pragma omp simd
    for (int t = 0; t < L; ++t) {
      const double a_next = dn - sigma[t];
      const bool swap = std::abs(alpha[t]) < std::abs(c);
      // Without a swap the multiplier is c / α (0 where α = 0 = c), with one α / c.
      const double num = swap ? alpha[t] : c, den = swap ? c : alpha[t];
      const double mult = den != 0 ? num / den : 0;
      f.u0[i * L + t] = swap ? c : alpha[t];
      f.u1[i * L + t] = swap ? a_next : beta[t];
      f.u2[i * L + t] = swap ? b_next : 0;
      f.l[i * L + t] = mult;
      f.swap[i * L + t] = swap ? 1.0 : 0.0;
      const double next_alpha = swap ? beta[t] - mult * a_next : a_next - mult * beta[t];
      beta[t] = swap ? -mult * b_next : b_next;
      alpha[t] = next_alpha;
    }
  }
  for (int t = 0; t < L; ++t) {
    const int64_t at = (p - 1) * L + t;
    f.u0[at] = alpha[t];
    f.u1[at] = f.u2[at] = f.l[at] = f.swap[at] = 0;
  }
#pragma omp simd
  for (int64_t i = 0; i < p * L; ++i) {  // from here on u0 holds the pivots' reciprocals
    const double pivot = std::abs(f.u0[i]) < tiny ? std::copysign(tiny, f.u0[i]) : f.u0[i];
    f.u0[i] = 1.0 / pivot;
  }
}

// x <- (T − σ_t I)⁻¹ x for the kCount lanes t = first, first + 1, ..., whose vectors are the
// columns of x (p rows, ld apart): all lanes at once as a p x kLuLanes block, or one as a
// plain vector.
template <int kCount>
__attribute__((always_inline)) inline void SolveShiftedBody(int64_t p, const ShiftedLu& f,
                                                            int first, double* x, int64_t ld) {
  constexpr int L = kLuLanes;
  for (int64_t i = 0; i + 1 < p; ++i) {
#pragma omp simd
    for (int t = 0; t < kCount; ++t) {
      const int64_t at = i * L + first + t;
      const double here = x[i * ld + t], there = x[(i + 1) * ld + t];
      const bool swap = f.swap[at] != 0;
      const double pivot_row = swap ? there : here;
      x[i * ld + t] = pivot_row;
      x[(i + 1) * ld + t] = (swap ? here : there) - f.l[at] * pivot_row;
    }
  }
  for (int64_t i = p - 1; i >= 0; --i) {
#pragma omp simd
    for (int t = 0; t < kCount; ++t) {
      const int64_t at = i * L + first + t;
      const double next = i + 1 < p ? x[(i + 1) * ld + t] : 0;
      const double after = i + 2 < p ? x[(i + 2) * ld + t] : 0;
      x[i * ld + t] = (x[i * ld + t] - f.u1[at] * next - f.u2[at] * after) * f.u0[at];
    }
  }
}

RRAE_FAST_AVX2 void FactorShiftedAvx2(int64_t p, const double* d, const double* e,
                                      const double* sigma, double tiny, const ShiftedLu& f) {
  FactorShiftedBody(p, d, e, sigma, tiny, f);
}

void FactorShiftedGeneric(int64_t p, const double* d, const double* e, const double* sigma,
                          double tiny, const ShiftedLu& f) {
  FactorShiftedBody(p, d, e, sigma, tiny, f);
}

RRAE_FAST_AVX2 void SolveShiftedAvx2(int64_t p, const ShiftedLu& f, double* x) {
  SolveShiftedBody<kLuLanes>(p, f, 0, x, kLuLanes);
}

void SolveShiftedGeneric(int64_t p, const ShiftedLu& f, double* x) {
  SolveShiftedBody<kLuLanes>(p, f, 0, x, kLuLanes);
}

// x <- (T − σ_t I)⁻¹ x for lane t alone, x a plain vector of p entries.
void SolveShiftedLane(int64_t p, const ShiftedLu& f, int t, double* x) {
  SolveShiftedBody<1>(p, f, t, x, 1);
}

// ‖T x − λ x‖_∞.
double Residual(int64_t p, const double* d, const double* e, double lambda, const double* x) {
  double worst = 0;
  for (int64_t i = 0; i < p; ++i) {
    double r = (d[i] - lambda) * x[i];
    if (i > 0) r += e[i - 1] * x[i - 1];
    if (i + 1 < p) r += e[i] * x[i + 1];
    worst = std::max(worst, std::abs(r));
  }
  return worst;
}

// The eigenvectors of (d, e) for its k largest eigenvalues lam[0..k) (descending) into the
// rows of x (k x p), and the largest residual ‖T x_j − λ_j x_j‖_∞ in *worst. False if one of
// them does not reach its residual tolerance.
bool TopEigenvectors(int64_t p, int64_t k, const double* d, const double* e, const double* lam,
                     double* x, double* worst, GramScratch& sc) {
  double tnorm = 0;
  for (int64_t i = 0; i < p; ++i) {
    tnorm = std::max(tnorm, std::abs(d[i]) + std::abs(e[i]) + (i > 0 ? std::abs(e[i - 1]) : 0));
  }
  if (tnorm == 0) tnorm = 1;
  const double tiny = kEps * tnorm;
  const double cluster = 1e-3 * tnorm;        // closer eigenvalues: keep their vectors orthogonal
  const double separate = 10 * kEps * tnorm;  // shifts of one cluster at least this far apart
  const double accept = 1e3 * double(p) * kEps * tnorm;  // residual tolerance
  constexpr int L = kLuLanes;
  double* lu = sc.lu.data();
  const ShiftedLu f{lu, lu + p * L, lu + 2 * p * L, lu + 3 * p * L, lu + 4 * p * L};
  double* lanes = lu + 5 * p * L;  // p x L: the first solve of every lane at once
  const bool avx2 = Avx2Available();
  int64_t first = 0;  // the current cluster is lam[first .. j]
  double previous = 0;
  double sigma[L];
  int64_t cluster_first[L];
  for (int64_t j0 = 0; j0 < k; j0 += L) {
    const int n = static_cast<int>(std::min<int64_t>(L, k - j0));
    for (int t = 0; t < n; ++t) {  // the shifts, as one at a time would take them
      const int64_t j = j0 + t;
      if (j > 0 && lam[j - 1] - lam[j] > cluster) first = j;
      double shift = lam[j];
      if (j > first && shift > previous - separate) shift = previous - separate;
      previous = sigma[t] = shift;
      cluster_first[t] = first;
    }
    std::fill(sigma + n, sigma + L, sigma[n - 1]);  // lanes beyond the last repeat it
    if (avx2) {
      FactorShiftedAvx2(p, d, e, sigma, tiny, f);
    } else {
      FactorShiftedGeneric(p, d, e, sigma, tiny, f);
    }
    // Start vectors: one pseudo-random sequence per lane, the lanes' chains side by side.
    uint64_t state[L];
    for (int t = 0; t < L; ++t) {
      state[t] = 0x9E3779B97F4A7C15ull * static_cast<uint64_t>(j0 + std::min(t, n - 1) + 1);
    }
    for (int64_t i = 0; i < p; ++i) {
      for (int t = 0; t < L; ++t) {
        state[t] = state[t] * 6364136223846793005ull + 1442695040888963407ull;
        lanes[i * L + t] = double(state[t] >> 11) * 0x1p-53 - 0.5;
      }
    }
    if (avx2) {
      SolveShiftedAvx2(p, f, lanes);
    } else {
      SolveShiftedGeneric(p, f, lanes);
    }
    for (int t = 0; t < n; ++t) {
      const int64_t j = j0 + t, from = cluster_first[t];
      double* xj = x + j * p;
      for (int64_t i = 0; i < p; ++i) xj[i] = lanes[i * L + t];
      bool accepted = false;
      for (int it = 0; it < 6 && !accepted; ++it) {
        if (it > 0) SolveShiftedLane(p, f, t, xj);  // the first solve is done
        if (!Normalize(xj, p)) return false;
        if (j > from) {  // one pass per solve; the accepted vector gets a second one below
          Project(x + from * p, j - from, xj, p);
          if (!Normalize(xj, p)) return false;
        }
        const double residual = Residual(p, d, e, lam[j], xj);
        accepted = residual <= accept;
        if (accepted) *worst = std::max(*worst, residual);
      }
      if (!accepted) return false;
      if (j > from) {
        Project(x + from * p, j - from, xj, p);
        if (!Normalize(xj, p)) return false;
        *worst = std::max(*worst, Residual(p, d, e, lam[j], xj));
      }
    }
  }
  return true;
}

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
  const int64_t p = std::min(m, n), q = std::max(m, n), block = RowBlock(p, q);
  double* rows = RowBuffer(sc);
  for (int64_t r0 = 0; r0 < q; r0 += block) {
    const int64_t count = std::min(block, q - r0);
    if (block < q) LoadRows(a, m, n, r0, count, rows);  // else the Gram matrix's copy is there
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
    double norm = std::sqrt(Dot(wj, wj, q));
    bool kept = false;
    for (int pass = 0; pass < 4 && norm > 0; ++pass) {
      Project(w, j, wj, q);
      const double after = std::sqrt(Dot(wj, wj, q));
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
      Project(w, j, candidate, q);
      Project(w, j, candidate, q);
      const double c = std::sqrt(Dot(candidate, candidate, q));
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
    const double norm = std::sqrt(Dot(wj, wj, q));
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
  sc.rows.resize(RowBlock(p, q) * p + 8);  // + 8: room to start at a 64-byte boundary
  sc.g.resize(p * p);
  sc.d.resize(p);
  sc.e.resize(p);
  sc.tau.resize(p);
  sc.lam.resize(k);
  sc.eig.resize(2 * p + 5 * k);
  sc.lu.resize(6 * p * kLuLanes);
  sc.x.resize(k * p);
  sc.ev.resize(p * k);
  sc.xx.resize(k * k);
  sc.wt.resize(k * q);
  sc.copy.resize(k * q);
  sc.work.resize(std::max(2 * p, q));

  // 1. G = YᵀY, scaled so that its largest diagonal entry (its largest entry) is 1.
  GramMatrix(la, a, m, n, sc);
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
  Tridiagonalize(p, g, d, e, sc.tau.data(), sc.work.data());
  double* lam = sc.lam.data();
  if (!TridiagonalTopEigenvalues(p, k, d, e, UseBisection(p, k), lam, sc.eig.data())) {
    return false;
  }

  // 4. Their eigenvectors, checked.
  double* x = sc.x.data();
  double residual = 0;
  if (!TopEigenvectors(p, k, d, e, lam, x, &residual, sc)) return false;
  const double orthogonality = OrthogonalityError(la, k, p, x, sc.xx.data());
  if (!(orthogonality <= 1e-8)) return false;

  // 5. In G's coordinates (p x k, a vector per column), then W = Y E (q x k).
  BackTransform(p, k, g, sc.tau.data(), x);
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

// ------------------------------------------------------------------------------------------
// Pieces shared with the shifted Gram solves
// ------------------------------------------------------------------------------------------

template <typename T>
void GramOfShortSide(const Lapack<double>& la, const T* a, int64_t m, int64_t n, GramScratch& sc) {
  const int64_t p = std::min(m, n), q = std::max(m, n);
  sc.rows.resize(RowBlock(p, q) * p + 8);
  sc.g.resize(p * p);
  GramMatrix(la, a, m, n, sc);
}
template void GramOfShortSide<float>(const Lapack<double>&, const float*, int64_t, int64_t,
                                     GramScratch&);
template void GramOfShortSide<double>(const Lapack<double>&, const double*, int64_t, int64_t,
                                      GramScratch&);

void ReduceToTridiagonal(int64_t p, double* g, double* d, double* e, double* tau, double* w) {
  Tridiagonalize(p, g, d, e, tau, w);
}

void ApplyReflectors(int64_t p, int64_t count, const double* g, const double* tau, bool transposed,
                     double* x) {
  if (transposed) {
    BackTransform<true>(p, count, g, tau, x);
  } else {
    BackTransform<false>(p, count, g, tau, x);
  }
}

}  // namespace rrae_fast::cpu
