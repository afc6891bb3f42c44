// Batched small matrices: one-sided (Hestenes) Jacobi SVD, one thread block per matrix, the
// whole matrix held in shared memory. For the RRAE latent sizes (min(m, n) <= 128), where a
// `vmap` over thousands of matrices becomes a single launch.
#ifndef RRAE_FAST_CUDA_SMALL_SVD_H_
#define RRAE_FAST_CUDA_SMALL_SVD_H_

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

#include "common/status.h"

namespace rrae_fast::cuda {

inline constexpr int64_t kJacobiMaxCols = 128;

// Shared memory one matrix needs: the max(m, n) x min(m, n) working copy, the right rotations
// (min(m, n)²), the singular values and their order.
size_t JacobiSharedBytes(int64_t m, int64_t n, size_t element_size);

// Whether the Jacobi kernel takes m x n matrices of this element size on the current device.
bool JacobiFits(int64_t m, int64_t n, size_t element_size);

// Top-kw triplets of each row-major m x n matrix a[b] into u [batch, m, kw], s [batch, kw] and
// vt [batch, kw, n] (row-major, unsigned, not yet zeroed beyond k). Members whose flags already
// hold kFlagNonFinite are skipped; members that do not converge within the sweep limit get
// kFlagUnconverged. Enqueues one kernel; no synchronisation.
template <typename T>
Status JacobiSvd(cudaStream_t stream, int64_t batch, int64_t m, int64_t n, int64_t kw, const T* a,
                 T* u, T* s, T* vt, int32_t* flags);

}  // namespace rrae_fast::cuda

#endif  // RRAE_FAST_CUDA_SMALL_SVD_H_
