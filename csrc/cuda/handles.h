// cuBLAS and cuSOLVER handles, lent to one call at a time from a pool per (device, stream).
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

// A pair of handles held by one call, bound to its stream, and given back to the pool of that
// (device, stream) when the lease ends. Two calls running at once never share a handle, from
// whatever threads (a cuBLAS or cuSOLVER handle is not safe to use from two at once).
class HandleLease {
 public:
  HandleLease() = default;
  HandleLease(const HandleLease&) = delete;
  HandleLease& operator=(const HandleLease&) = delete;
  HandleLease(HandleLease&& other) noexcept { *this = static_cast<HandleLease&&>(other); }
  HandleLease& operator=(HandleLease&& other) noexcept;
  ~HandleLease() { Return(); }

  const Handles& handles() const { return handles_; }

 private:
  friend Status BorrowHandles(cudaStream_t stream, HandleLease* out);
  void Return();

  int device_ = -1;  // -1: holds nothing
  cudaStream_t stream_ = nullptr;
  Handles handles_;
};

// Lends `out` a pair of handles of the current device bound to `stream`: one from the pool of
// that (device, stream), or new ones when every pooled pair is lent (creating them is the
// expensive part, milliseconds; pooled pairs are kept for the life of the process: XLA reuses
// its streams).
Status BorrowHandles(cudaStream_t stream, HandleLease* out);

}  // namespace rrae_fast::cuda

#endif  // RRAE_FAST_CUDA_HANDLES_H_
