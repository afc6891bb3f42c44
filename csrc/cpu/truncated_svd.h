// rrae_fast::cpu::TruncatedSvd: the top-k singular triplets of a batch of row-major matrices.
//
// Pure C++ over LAPACK: nothing here knows of XLA or Python. Shapes follow the Python op:
// a is [batch, m, n], u is [batch, m, k], s is [batch, k], vt is [batch, k, n], all row-major.
//
// Guarantees, per batch member:
//   * s is descending and >= 0; columns of u and rows of vt are orthonormal;
//   * sign convention: the entry of largest magnitude in each column of u is positive (the first
//     such entry on a tie), with the matching row of vt flipped alongside;
//   * a member with a NaN or Inf entry gets NaN in all its outputs and the others are unaffected;
//   * a LAPACK failure on finite input is reported as an error Status naming routine and info.
#ifndef RRAE_FAST_CPU_TRUNCATED_SVD_H_
#define RRAE_FAST_CPU_TRUNCATED_SVD_H_

#include <cstdint>

#include "common/parallel.h"
#include "common/status.h"
#include "cpu/lapack.h"

namespace rrae_fast::cpu {

// Test hook: make the LAPACK calls report failure without running them, so that the recovery
// and error paths can be exercised. kNone in every normal call.
enum class Fault : int64_t {
  kNone = 0,
  kGesddFails = 1,  // gesdd reports non-convergence; the gesvd fallback runs
  kAllFail = 2,     // gesdd and the gesvd fallback both report non-convergence
};

// Largest m or n the kernel accepts: LAPACK takes 32-bit sizes.
bool SizesFitLapack(int64_t m, int64_t n);

template <typename T>
Status TruncatedSvd(const LapackTable& lapack, int64_t batch, int64_t m, int64_t n, int64_t k,
                    const T* a, T* u, T* s, T* vt, const Scheduler& schedule, int64_t workers,
                    Fault fault);

}  // namespace rrae_fast::cpu

#endif  // RRAE_FAST_CPU_TRUNCATED_SVD_H_
