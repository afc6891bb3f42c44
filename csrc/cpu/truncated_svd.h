// rrae_fast::cpu::TruncatedSvd: the top-k singular triplets of a batch of row-major matrices.
//
// Pure C++ over BLAS/LAPACK: nothing here knows of XLA or Python. Shapes follow the Python op:
// a is [batch, m, n], k is [batch] (each member's rank, 1 <= k <= max_k), u is
// [batch, m, max_k], s is [batch, max_k], vt is [batch, max_k, n], all row-major, with entries
// beyond a member's k set to zero; init (optional) is [batch, m, init_cols]; info is [batch, 2]
// (path taken, sweeps over A).
//
// Three paths per matrix: the dense path (LAPACK gesdd, gesvd fallback), the iterative path
// (randomized subspace iteration, stopped by a residual test, dense fallback when it does not
// converge within its budget) and, for small float32 matrices, the Gram path (float64 Gram
// matrix and tridiagonal eigensolver, dense fallback if its self-checks fail). Guarantees, per
// batch member, whatever the path:
//   * s is descending and >= 0; columns of u and rows of vt are orthonormal;
//   * sign convention: the entry of largest magnitude in each column of u is positive (the first
//     such entry on a tie), with the matching row of vt flipped alongside;
//   * a member with a NaN or Inf entry gets NaN in all its outputs and the others are unaffected;
//   * a LAPACK failure on finite input is reported as an error Status naming routine and info.
#ifndef RRAE_FAST_CPU_TRUNCATED_SVD_H_
#define RRAE_FAST_CPU_TRUNCATED_SVD_H_

#include <cstdint>

#include "common/export.h"
#include "common/parallel.h"
#include "common/status.h"
#include "common/svd_types.h"
#include "cpu/dense_svd.h"
#include "cpu/lapack.h"

namespace rrae_fast::cpu {

using ::rrae_fast::Method;
using ::rrae_fast::Path;

struct SvdOptions {
  Method method = Method::kAuto;
  Fault fault = Fault::kNone;
};

// Largest sizes the kernel accepts: LAPACK takes 32-bit sizes.
RRAE_FAST_CORE_API bool SizesFitLapack(int64_t m, int64_t n);

// The automatic choice: true when the iterative path is expected to beat the dense one.
RRAE_FAST_CORE_API bool PreferIterative(int64_t m, int64_t n, int64_t k);

// The automatic choice for float32: true when the Gram path (gram_svd.h) is expected to beat
// LAPACK. Where PreferIterative is also true the iteration runs first and the Gram path is its
// fallback.
RRAE_FAST_CORE_API bool PreferGram(int64_t m, int64_t n, int64_t k);

template <typename T>
RRAE_FAST_CORE_API Status TruncatedSvd(const LapackTable& lapack, int64_t batch, int64_t m,
                                       int64_t n, const int32_t* k, int64_t max_k, const T* a,
                                       const T* init, int64_t init_cols, T* u, T* s, T* vt,
                                       int32_t* info, const Scheduler& schedule, int64_t workers,
                                       const SvdOptions& options);

// TruncatedSvd keeps the workspace of its iterative and Gram paths between calls (one set per
// worker that ran, up to 256 MiB in all per element type); this frees it.
RRAE_FAST_CORE_API void ReleaseWorkspace();

// Bytes of the workspace kept now (both element types), for tests.
RRAE_FAST_CORE_API std::size_t KeptWorkspaceBytes();

}  // namespace rrae_fast::cpu

#endif  // RRAE_FAST_CPU_TRUNCATED_SVD_H_
