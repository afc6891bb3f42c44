// cuBLAS and cuSOLVER handles, created once per (device, stream) and reused across calls.
#ifndef RRAE_FAST_CUDA_HANDLES_H_
#define RRAE_FAST_CUDA_HANDLES_H_

#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <cusolverDn.h>

#include "common/status.h"

namespace rrae_fast::cuda {

struct Handles {
  cublasHandle_t blas = nullptr;
  cusolverDnHandle_t solver = nullptr;
};

// The handles bound to `stream` on the current device. The first call for a stream creates
// them (the expensive part: milliseconds); later calls look them up under a mutex. They are
// never destroyed: XLA reuses its streams for the life of the process.
Status HandlesFor(cudaStream_t stream, Handles* out);

}  // namespace rrae_fast::cuda

#endif  // RRAE_FAST_CUDA_HANDLES_H_
