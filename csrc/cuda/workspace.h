// Device workspace for one call: buffers carved out of one block from XLA's scratch allocator.
#ifndef RRAE_FAST_CUDA_WORKSPACE_H_
#define RRAE_FAST_CUDA_WORKSPACE_H_

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <functional>

namespace rrae_fast::cuda {

// Returns `bytes` of device memory valid until the call's work on the stream is done, or null.
using Allocator = std::function<void*(size_t bytes)>;

// Hands out aligned typed pointers from a base address. With a null base it only counts, so a
// path sizes its workspace by running its own carving code twice: once to count, once to bind.
class Carver {
 public:
  explicit Carver(char* base) : base_(base) {}

  template <typename T>
  T* Take(int64_t count) {
    used_ = (used_ + kAlign - 1) / kAlign * kAlign;
    T* p = base_ != nullptr ? reinterpret_cast<T*>(base_ + used_) : nullptr;
    used_ += sizeof(T) * static_cast<size_t>(std::max<int64_t>(count, 1));
    return p;
  }
  size_t used() const { return used_; }

  // Every buffer's alignment, counted from the base, which must itself be aligned to it.
  static constexpr size_t kAlign = 256;

 private:
  char* base_;
  size_t used_ = 0;
};

}  // namespace rrae_fast::cuda

#endif  // RRAE_FAST_CUDA_WORKSPACE_H_
