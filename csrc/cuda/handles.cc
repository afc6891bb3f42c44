// Per-device pools of cuBLAS and cuSOLVER handles (see handles.h).
#include "cuda/handles.h"

#include <map>
#include <mutex>
#include <utility>
#include <vector>

#include "cuda/check.h"

namespace rrae_fast::cuda {
namespace {

std::mutex& PoolMutex() {
  static auto* mu = new std::mutex();
  return *mu;
}

using Key = std::pair<int, cudaStream_t>;  // (device, stream)

// Pairs not lent at present, per (device, stream). A pair stays bound to the stream it was
// created for, so that work it queued there is ordered before its next use (cuBLAS keeps a
// workspace per handle).
std::map<Key, std::vector<Handles>>& Pool() {
  static auto* pool = new std::map<Key, std::vector<Handles>>();
  return *pool;
}

Status Create(cudaStream_t stream, Handles* h) {
  RRAE_FAST_CUDA_TRY(cublasCreate(&h->blas));
  RRAE_FAST_CUDA_TRY(cublasSetStream(h->blas, stream));
  // Full float32 arithmetic: no TF32 tensor-core rounding inside the GEMMs.
  RRAE_FAST_CUDA_TRY(cublasSetMathMode(h->blas, CUBLAS_DEFAULT_MATH));
  RRAE_FAST_CUDA_TRY(cusolverDnCreate(&h->solver));
  RRAE_FAST_CUDA_TRY(cusolverDnSetStream(h->solver, stream));
  return Status::Ok();
}

}  // namespace

HandleLease& HandleLease::operator=(HandleLease&& other) noexcept {
  if (this != &other) {
    Return();
    device_ = other.device_;
    stream_ = other.stream_;
    handles_ = other.handles_;
    other.device_ = -1;
    other.handles_ = Handles{};
  }
  return *this;
}

void HandleLease::Return() {
  if (device_ < 0) return;
  std::lock_guard<std::mutex> lock(PoolMutex());
  Pool()[{device_, stream_}].push_back(handles_);
  device_ = -1;
  handles_ = Handles{};
}

Status BorrowHandles(cudaStream_t stream, HandleLease* out) {
  out->Return();
  int device = 0;
  RRAE_FAST_CUDA_TRY(cudaGetDevice(&device));
  Handles h;
  bool pooled = false;
  {
    std::lock_guard<std::mutex> lock(PoolMutex());
    std::vector<Handles>& free = Pool()[{device, stream}];
    if (!free.empty()) {
      h = free.back();
      free.pop_back();
      pooled = true;
    }
  }
  if (!pooled) {
    if (Status st = Create(stream, &h); !st.ok) {
      // A half-created pair is destroyed, not pooled.
      if (h.blas != nullptr) cublasDestroy(h.blas);
      if (h.solver != nullptr) cusolverDnDestroy(h.solver);
      return st;
    }
  }
  out->device_ = device;
  out->stream_ = stream;
  out->handles_ = h;
  return Status::Ok();
}

}  // namespace rrae_fast::cuda
