// Dense path: LAPACK's thin SVD of one matrix, top k kept.
#ifndef RRAE_FAST_CPU_DENSE_SVD_H_
#define RRAE_FAST_CPU_DENSE_SVD_H_

#include <cstdint>
#include <vector>

#include "common/export.h"
#include "common/status.h"
#include "cpu/fault_injection.h"
#include "cpu/lapack.h"

namespace rrae_fast::cpu {

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
// gesvd if gesdd fails to converge; an error Status only if both fail. `fault` is kNone outside
// tests (fault_injection.h).
template <typename T>
Status DenseSvd(const Lapack<T>& la, int64_t m, int64_t n, int64_t k, int64_t ldu, const T* a,
                T* u, T* s, T* vt, DenseScratch<T>& sc, Fault fault);

}  // namespace rrae_fast::cpu

#endif  // RRAE_FAST_CPU_DENSE_SVD_H_
