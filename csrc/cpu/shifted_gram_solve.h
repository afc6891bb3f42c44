// Shifted solves with the projected Gram matrix of a small matrix.
//
// With p = min(m, n), Y = A (m >= n) or Aᵀ (m < n) and the c rows b_j of a basis B (c x p,
// orthonormal to working accuracy; zero rows allowed), let
//
//   H = P Yᵀ Y P,   P = I − Bᵀ B,
//
// the Gram matrix of the short side with span(B) projected out. For each j with s_j > 0 this
// solves
//
//   (s_j² I − H) z_j = r_j,
//
// and sets z_j = 0 where s_j = 0. When B holds the top c right singular vectors of Y and s_j
// the singular values, every system is symmetric positive definite with smallest eigenvalue
// s_j² − σ_{c+1}², and these are the discarded-spectrum solves of the truncated SVD's exact
// derivative, for all kept indices at once, with one Gram matrix and one tridiagonal reduction
// instead of a full SVD.
//
// Where the caller has checked the gap (`gap_checked`), matrix-free conjugate gradients come
// first (two passes over A per iteration for all rows, in float64, to a relative residual of
// 1e-12), within the iterations that cost less than the method below; it takes over where they
// do not converge. For an RRAE latent (σ_{c+1} ≪ σ_c) they need two or three.
//
// Method, in float64 whatever T is: G = YᵀY (the Gram path's tiles), scaled to a largest
// diagonal of 1; H = G − Bᵀ Z − Zᵀ B with Z = B G − ½ (B G Bᵀ) B (exactly symmetric);
// Householder reduction H = Q T Qᵀ; Qᵀ r_j; for each j the LDLᵀ factors of s_j² − T (no
// pivoting: positive definite) and their solve; then Q back. Cost O(q·p² + p³ + c·p²).
//
// Positive definiteness is checked, not assumed: `ok` is 1 (2 where the conjugate gradients
// solved them) when (s_min² − margin·s_max²) I − T
// has only positive pivots (every eigenvalue of H is at least margin·s_max² below the smallest
// positive shift), else 0 and z holds nothing the caller may use (it falls back). A matrix,
// basis, shift or right-hand side with a NaN or Inf entry gets NaN in z, with ok = 1.
#ifndef RRAE_FAST_CPU_SHIFTED_GRAM_SOLVE_H_
#define RRAE_FAST_CPU_SHIFTED_GRAM_SOLVE_H_

#include <cstdint>

#include "common/export.h"
#include "common/parallel.h"
#include "cpu/lapack.h"

namespace rrae_fast::cpu {

// Largest min(m, n) the solves accept (their workspace is kept per thread between calls).
inline constexpr int64_t kShiftedSolveMaxSide = 256;

// For each of `batch` members (row-major a: m x n, basis: c x p, s: c, rhs: c x p), the rows of
// z (c x p) and ok as described above; members run in parallel over `workers` threads.
template <typename T>
RRAE_FAST_CORE_API void ShiftedGramSolve(const LapackTable& lapack, int64_t batch, int64_t m,
                                         int64_t n, int64_t c, const T* a, const T* basis,
                                         const T* s, const T* rhs, double margin, bool gap_checked,
                                         T* z, int32_t* ok, const Scheduler& schedule,
                                         int64_t workers);

}  // namespace rrae_fast::cpu

#endif  // RRAE_FAST_CPU_SHIFTED_GRAM_SOLVE_H_
