// Householder reduction of a symmetric matrix to tridiagonal form T = Qᵀ G Q, and Q applied
// back: stage 2 of the Gram path (gram_svd.h) and of the shifted Gram solves
// (shifted_gram_solve.h). AVX2 + FMA builds of the loops where the CPU has them (avx2.h).
#ifndef RRAE_FAST_CPU_TRIDIAGONAL_H_
#define RRAE_FAST_CPU_TRIDIAGONAL_H_

#include <cstdint>

namespace rrae_fast::cpu {

// Householder reduction of the symmetric p x p matrix g (held in full, entries of magnitude at
// most ~1) to the tridiagonal T = Qᵀ G Q with diagonal d and couplings e (e[p − 1] = 0); the
// reflectors that make Q stay in g, their scalars in tau (p). w: 2p scratch.
void ReduceToTridiagonal(int64_t p, double* g, double* d, double* e, double* tau, double* w);

// The rows of x (count x p) <- Q times them, or Qᵀ times them where `transposed`, for the Q
// that ReduceToTridiagonal left in (g, tau).
void ApplyReflectors(int64_t p, int64_t count, const double* g, const double* tau, bool transposed,
                     double* x);

}  // namespace rrae_fast::cpu

#endif  // RRAE_FAST_CPU_TRIDIAGONAL_H_
