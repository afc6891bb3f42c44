// Dense path: LAPACK's thin SVD of one matrix, top k kept.
#ifndef RRAE_FAST_CPU_DENSE_SVD_H_
#define RRAE_FAST_CPU_DENSE_SVD_H_

#include <cstdint>
#include <vector>

#include "common/status.h"
#include "cpu/lapack.h"

namespace rrae_fast::cpu {

// Test hook: make the LAPACK calls (or the Gram path's checks) report failure, so that the
// recovery and error paths can be exercised. kNone in every normal call.
enum class Fault : int64_t {
  kNone = 0,
  kGesddFails = 1,  // gesdd reports non-convergence; the gesvd fallback runs
  kAllFail = 2,     // gesdd and the gesvd fallback both report non-convergence
  kGramFails = 3,   // the Gram path's self-checks report failure; the dense path runs
};

template <typename T>
struct DenseScratch {
  std::vector<T> a;   // copy of the input, destroyed by LAPACK
  std::vector<T> w;   // LAPACK's left factor: n x r, column-major (our Vt)
  std::vector<T> zt;  // LAPACK's right factor: r x m, column-major (our U, transposed)
  std::vector<T> s;   // all r singular values
  std::vector<T> work;
  std::vector<lapack_int> iwork;
};

// Top-k triplets of the finite row-major m x n matrix `a` into u (m x k, row stride ldu >= k),
// s (k) and vt (k x n row-major), unsigned (the caller applies the sign convention). gesdd first,
// gesvd if gesdd fails to converge; an error Status only if both fail.
template <typename T>
Status DenseSvd(const Lapack<T>& la, int64_t m, int64_t n, int64_t k, int64_t ldu, const T* a,
                T* u, T* s, T* vt, DenseScratch<T>& sc, Fault fault);

}  // namespace rrae_fast::cpu

#endif  // RRAE_FAST_CPU_DENSE_SVD_H_
