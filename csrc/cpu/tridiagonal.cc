// Householder reduction of a symmetric matrix to tridiagonal form, and the reflectors applied
// back (see tridiagonal.h).
#include "cpu/tridiagonal.h"

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "cpu/avx2.h"

namespace rrae_fast::cpu {

namespace {

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

template <bool kTransposed>
void BackTransform(int64_t p, int64_t k, const double* g, const double* tau, double* x) {
  if (Avx2Available()) {
    BackTransformAvx2<kTransposed>(p, k, g, tau, x);
  } else {
    BackTransformGeneric<kTransposed>(p, k, g, tau, x);
  }
}

}  // namespace

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
