// CUDA, cuBLAS and cuSOLVER return codes as Status values (host side).
#ifndef RRAE_FAST_CUDA_CHECK_H_
#define RRAE_FAST_CUDA_CHECK_H_

#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <cusolverDn.h>

#include <string>

#include "common/status.h"

namespace rrae_fast::cuda {

inline Status Check(cudaError_t code, const char* what) {
  if (code == cudaSuccess) return Status::Ok();
  return Status::Error(std::string(what) + ": " + cudaGetErrorString(code));
}

inline Status Check(cublasStatus_t code, const char* what) {
  if (code == CUBLAS_STATUS_SUCCESS) return Status::Ok();
  return Status::Error(std::string(what) + ": cuBLAS status " + std::to_string(int(code)));
}

inline Status Check(cusolverStatus_t code, const char* what) {
  if (code == CUSOLVER_STATUS_SUCCESS) return Status::Ok();
  return Status::Error(std::string(what) + ": cuSOLVER status " + std::to_string(int(code)));
}

}  // namespace rrae_fast::cuda

// Evaluates a CUDA/cuBLAS/cuSOLVER call; returns its failure as a Status from the caller.
#define RRAE_FAST_CUDA_TRY(call)                                                     \
  do {                                                                               \
    ::rrae_fast::Status rrae_fast_status_ = ::rrae_fast::cuda::Check((call), #call); \
    if (!rrae_fast_status_.ok) return rrae_fast_status_;                             \
  } while (0)

// Propagates a failed Status.
#define RRAE_FAST_RETURN_IF_ERROR(expr)                  \
  do {                                                   \
    ::rrae_fast::Status rrae_fast_status_ = (expr);      \
    if (!rrae_fast_status_.ok) return rrae_fast_status_; \
  } while (0)

#endif  // RRAE_FAST_CUDA_CHECK_H_
