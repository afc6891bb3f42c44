// Dense path: cuSOLVER's thin SVD (gesvd) of one matrix, top kw kept.
#ifndef RRAE_FAST_CUDA_DENSE_SVD_H_
#define RRAE_FAST_CUDA_DENSE_SVD_H_

#include <cstdint>

#include "common/status.h"
#include "cuda/context.h"
#include "cuda/workspace.h"

namespace rrae_fast::cuda {

template <typename T>
struct DenseWork {
  T* w = nullptr;      // column-major tall copy of A or Aᵀ, destroyed by gesvd
  T* left = nullptr;   // gesvd's U: max(m, n) x min(m, n)
  T* right = nullptr;  // gesvd's VT: min(m, n) x min(m, n)
  T* sig = nullptr;    // min(m, n)
  T* rwork = nullptr;  // min(m, n)
  T* work = nullptr;
  int lwork = 0;
};

// Carves the workspace of one m x n matrix (reused for every member of a batch).
template <typename T>
Status CarveDense(const Context& ctx, int64_t m, int64_t n, Carver& carver, DenseWork<T>* work);

// Top-kw triplets of the row-major m x n matrix `a` into u (row-major m x kw), s (kw) and vt
// (row-major kw x n), unsigned. `dev_info` (device) receives gesvd's info: > 0 when it did not
// converge (the epilogue then writes NaN). Where the member's `flag` (device) says its input is
// not finite, gesvd factors zeros instead (the epilogue writes NaN). Enqueued on ctx.stream; no
// synchronisation.
template <typename T>
Status DenseSvd(const Context& ctx, int64_t m, int64_t n, int64_t kw, const T* a, T* u, T* s,
                T* vt, const int32_t* flag, int* dev_info, const DenseWork<T>& work);

}  // namespace rrae_fast::cuda

#endif  // RRAE_FAST_CUDA_DENSE_SVD_H_
