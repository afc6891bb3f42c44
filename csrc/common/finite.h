// Finiteness check of a block of numbers, shared by the kernels.
#ifndef RRAE_FAST_COMMON_FINITE_H_
#define RRAE_FAST_COMMON_FINITE_H_

#include <cmath>
#include <cstdint>

namespace rrae_fast {

template <typename T>
bool AllFinite(const T* x, int64_t count) {
  for (int64_t i = 0; i < count; ++i) {
    if (!std::isfinite(x[i])) return false;
  }
  return true;
}

}  // namespace rrae_fast

#endif  // RRAE_FAST_COMMON_FINITE_H_
