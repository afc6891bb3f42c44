// The method choice and the per-matrix path codes, shared by the CPU and CUDA kernels.
//
// A kernel writes, for each batch member, `info = [path, passes]`: the path below and the
// number of products with A (0 on exact paths). The modules export the codes by name
// (csrc/ffi/codes.h) and the Python op reads them from there.
#ifndef RRAE_FAST_COMMON_SVD_TYPES_H_
#define RRAE_FAST_COMMON_SVD_TYPES_H_

#include <cstdint>

namespace rrae_fast {

// kGram: the CPU kernel's float64-Gram eigensolver path for small float32 matrices; the CUDA
// kernel treats it as kAuto. kAutoNoFallback / kIterativeNoFallback (internal, for the
// derivative rules): kAuto / kIterative, except that an iteration that does not converge is
// reported kUnconverged instead of being followed by another path. kDenseRedo (internal, CUDA
// only, for the op's redo of members an iteration left unconverged): kDense for the members
// whose k is >= 0 only; members with k < 0 are skipped and their outputs are unspecified.
enum class Method : int64_t {
  kAuto = 0,
  kDense = 1,
  kIterative = 2,
  kGram = 3,
  kAutoNoFallback = 4,
  kIterativeNoFallback = 5,
  kDenseRedo = 6,
};

// The method without its no-fallback flag.
inline Method BaseMethod(Method method) {
  if (method == Method::kAutoNoFallback) return Method::kAuto;
  if (method == Method::kIterativeNoFallback) return Method::kIterative;
  if (method == Method::kDenseRedo) return Method::kDense;
  return method;
}

enum class Path : int32_t {
  kDense = 0,               // the library's thin SVD (LAPACK / cuSOLVER gesvd)
  kIterative = 1,           // subspace iteration, converged
  kIterativeThenDense = 2,  // subspace iteration did not converge; dense result returned
  kNonFinite = 3,           // NaN/Inf input: outputs are NaN
  kJacobi = 4,              // CUDA: one-sided Jacobi, one thread block per matrix, converged
  kUnconverged = 5,         // iteration (or CUDA's Jacobi) did not converge, no fallback taken:
                            //   the op redoes the member (it never reaches the user)
  kSolverFailed = 6,        // CUDA: cuSOLVER's SVD did not converge; outputs are NaN
  kGram = 7,                // CPU: float64 Gram matrix + tridiagonal eigensolver (float32)
  kIterativeThenGram = 8,   // CPU: subspace iteration did not converge; Gram path's result
};

// Subspace width of the iterative path for rank k: oversampling makes the iteration converge
// like (σ_{b+1}/σ_k)² per pass instead of (σ_{k+1}/σ_k)²; 8 + k/16 extra columns keep the extra
// GEMM work near 6% for large k. Rounded down to a multiple of 8 where at least 8 extra columns
// remain (the products work on panels of 8 columns: at k = 16, b = 24 rather than 25 leaves no
// one-column remainder, measurably faster). At most min(m, n).
inline int64_t SubspaceWidth(int64_t m, int64_t n, int64_t k) {
  const int64_t r = m < n ? m : n;
  const int64_t rounded = (k + 8 + k / 16) / 8 * 8;
  const int64_t b = rounded > k + 8 ? rounded : k + 8;
  return b < r ? b : r;
}

}  // namespace rrae_fast

#endif  // RRAE_FAST_COMMON_SVD_TYPES_H_
