// Small float64 vector operations shared by the tridiagonal eigensolvers and the Gram path's
// orthonormalisation (header-only; plain loops the compiler vectorises).
#ifndef RRAE_FAST_CPU_VECTOR_OPS_H_
#define RRAE_FAST_CPU_VECTOR_OPS_H_

#include <algorithm>
#include <cmath>
#include <cstdint>

namespace rrae_fast::cpu::vec {

inline double Dot(const double* x, const double* y, int64_t len) {
  double acc = 0;
#pragma omp simd reduction(+ : acc)
  for (int64_t i = 0; i < len; ++i) acc += x[i] * y[i];
  return acc;
}

inline void Axpy(double alpha, const double* x, double* y, int64_t len) {
  for (int64_t i = 0; i < len; ++i) y[i] += alpha * x[i];
}

// Scales x to unit 2-norm; false if it is zero or not finite.
inline bool Normalize(double* x, int64_t len) {
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
inline void Project(const double* basis, int64_t count, double* x, int64_t len) {
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

}  // namespace rrae_fast::cpu::vec

#endif  // RRAE_FAST_CPU_VECTOR_OPS_H_
