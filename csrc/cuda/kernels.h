// Small device kernels shared by the CUDA paths: finiteness, random starts, the residual test,
// the per-member epilogue (zeros beyond k, NaN for failed members, path codes) and the sign
// convention. Each Launch* enqueues on `stream` and never synchronises.
#ifndef RRAE_FAST_CUDA_KERNELS_H_
#define RRAE_FAST_CUDA_KERNELS_H_

#include <cuda_runtime.h>

#include <cstdint>

namespace rrae_fast::cuda {

// Per-member flags (int32, device), or-ed together by the kernels below.
enum Flag : int32_t {
  kFlagNonFinite = 1,     // the input has a NaN or Inf entry
  kFlagUnconverged = 2,   // the iteration or the Jacobi sweeps did not meet the tolerance
  kFlagSolverFailed = 4,  // cuSOLVER's SVD reported non-convergence
};

// flags[b] |= kFlagNonFinite if x[b·per .. (b+1)·per) has a non-finite entry.
template <typename T>
void LaunchCheckFinite(cudaStream_t stream, int64_t batch, int64_t per, const T* x,
                       int32_t* flags);

// x[0 .. count) = deterministic pseudo-random numbers in [-1, 1) (splitmix64 of seed and index).
template <typename T>
void LaunchFillRandom(cudaStream_t stream, T* x, int64_t count, uint64_t seed);

// Replaces every column of x (rows x cols, ld) that has a non-finite entry by random numbers.
template <typename T>
void LaunchSanitizeColumns(cudaStream_t stream, int64_t rows, int64_t cols, T* x, int64_t ld,
                           uint64_t seed);

// r (b x b, ld b) = the upper triangle of qr (ld rows), zeros below.
template <typename T>
void LaunchCopyUpper(cudaStream_t stream, int64_t b, const T* qr, int64_t rows, T* r);

// *flag |= kFlagUnconverged unless every column j < min(*k, kw) of av − u·diag(sig) (m rows,
// ld m) has norm <= tol·sig[0] (and is finite).
template <typename T>
void LaunchResidualTest(cudaStream_t stream, int64_t m, int64_t kw, const T* av, const T* u,
                        const T* sig, const int32_t* k, double tol, int32_t* flag);

// x[0 .. count) = 0 if *flag has `bit` (a non-finite member's copies, before the solvers see
// them: cuSOLVER may fail the whole call on NaN instead of reporting it in its info).
template <typename T>
void LaunchZeroIfFlagged(cudaStream_t stream, const int32_t* flag, int32_t bit, T* x,
                         int64_t count);

// flags[i] |= bit where dev_info[i] != 0.
void LaunchInfoToFlags(cudaStream_t stream, int64_t count, const int* dev_info, int32_t bit,
                       int32_t* flags);

// Epilogue per member b (u: [batch, m, kw], s: [batch, kw], vt: [batch, kw, n], row-major):
// zeros beyond k[b]; NaN everywhere for a non-finite input or a failed solver; info[b] =
// [path code, passes] (the path from the flags, `path` when none is set).
template <typename T>
void LaunchFinalize(cudaStream_t stream, int64_t batch, int64_t m, int64_t n, int64_t kw,
                    const int32_t* k, const int32_t* flags, int32_t path, int32_t passes, T* u,
                    T* s, T* vt, int32_t* info);

// Flips (u_j, vt_j) so that the largest-magnitude entry of u_j is positive (the first on ties).
template <typename T>
void LaunchSignConvention(cudaStream_t stream, int64_t batch, int64_t m, int64_t n, int64_t kw,
                          T* u, T* vt);

}  // namespace rrae_fast::cuda

#endif  // RRAE_FAST_CUDA_KERNELS_H_
