// Per-stream handle cache (see handles.h).
#include "cuda/handles.h"

#include <map>
#include <mutex>
#include <utility>

#include "cuda/check.h"

namespace rrae_fast::cuda {

Status HandlesFor(cudaStream_t stream, Handles* out) {
  static std::mutex mu;
  static auto* pool = new std::map<std::pair<int, cudaStream_t>, Handles>();
  int device = 0;
  RRAE_FAST_CUDA_TRY(cudaGetDevice(&device));
  std::lock_guard<std::mutex> lock(mu);
  auto it = pool->find({device, stream});
  if (it != pool->end()) {
    *out = it->second;
    return Status::Ok();
  }
  Handles h;
  RRAE_FAST_CUDA_TRY(cublasCreate(&h.blas));
  RRAE_FAST_CUDA_TRY(cublasSetStream(h.blas, stream));
  // Full float32 arithmetic: no TF32 tensor-core rounding inside the GEMMs.
  RRAE_FAST_CUDA_TRY(cublasSetMathMode(h.blas, CUBLAS_DEFAULT_MATH));
  RRAE_FAST_CUDA_TRY(cusolverDnCreate(&h.solver));
  RRAE_FAST_CUDA_TRY(cusolverDnSetStream(h.solver, stream));
  pool->emplace(std::make_pair(device, stream), h);
  *out = h;
  return Status::Ok();
}

}  // namespace rrae_fast::cuda
