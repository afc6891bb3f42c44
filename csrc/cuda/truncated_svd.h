// rrae_fast::cuda::TruncatedSvd: the top-k singular triplets of a batch of row-major matrices on
// the GPU. The CUDA twin of csrc/cpu/truncated_svd.h: same shapes, same guarantees, same path
// codes (common/svd_types.h); nothing here knows of XLA or Python.
//
// a is [batch, m, n]; k is [batch] int32 on the device (1 <= k <= max_k, checked on the device
// by the caller's contract, not here); u [batch, m, max_k], s [batch, max_k], vt [batch, max_k,
// n], row-major, zero beyond each member's k; init (optional) [batch, m, init_cols]; info
// [batch, 2] int32 = (path code, products with A).
//
// Paths: Jacobi (one block per matrix, min(m, n) <= 128, batched in one launch), iterative
// (subspace iteration with a device-side residual test) and dense (cuSOLVER gesvd). Nothing is
// synchronised with the host: a member that fails the iteration's test is reported as
// Path::kUnconverged and redone by the op on the dense path; a member with NaN/Inf input, or
// whose gesvd does not converge, gets NaN outputs (Path::kNonFinite / kSolverFailed).
#ifndef RRAE_FAST_CUDA_TRUNCATED_SVD_H_
#define RRAE_FAST_CUDA_TRUNCATED_SVD_H_

#include <cstdint>

#include "common/status.h"
#include "common/svd_types.h"
#include "cuda/context.h"
#include "cuda/workspace.h"

namespace rrae_fast::cuda {

// The automatic choice for one shape: kJacobi, kIterative or kDense.
Path ChoosePath(int64_t m, int64_t n, int64_t max_k, size_t element_size, Method method);

template <typename T>
Status TruncatedSvd(const Context& ctx, const Allocator& allocate, int64_t batch, int64_t m,
                    int64_t n, const int32_t* k, int64_t max_k, const T* a, const T* init,
                    int64_t init_cols, T* u, T* s, T* vt, int32_t* info, Method method);

}  // namespace rrae_fast::cuda

#endif  // RRAE_FAST_CUDA_TRUNCATED_SVD_H_
