// What every CUDA path needs for one call: XLA's stream and the handles bound to it.
#ifndef RRAE_FAST_CUDA_CONTEXT_H_
#define RRAE_FAST_CUDA_CONTEXT_H_

#include <cuda_runtime.h>

#include "cuda/handles.h"

namespace rrae_fast::cuda {

struct Context {
  cudaStream_t stream = nullptr;
  Handles handles;
};

}  // namespace rrae_fast::cuda

#endif  // RRAE_FAST_CUDA_CONTEXT_H_
