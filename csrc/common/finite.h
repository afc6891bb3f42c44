// Finiteness check of a block of numbers, shared by the kernels.
#ifndef RRAE_FAST_COMMON_FINITE_H_
#define RRAE_FAST_COMMON_FINITE_H_

#include <cmath>
#include <cstdint>

namespace rrae_fast {

// x − x is zero for a finite x and NaN otherwise, so a block's sum of them is zero exactly when
// the block is finite; unlike a test per entry, the sum vectorises (no fast-math here, so the
// compiler keeps x − x). Stops at the first block that is not finite.
template <typename T>
bool AllFinite(const T* x, int64_t count) {
  constexpr int64_t kBlock = 2048;
  for (int64_t i0 = 0; i0 < count; i0 += kBlock) {
    const int64_t i1 = i0 + kBlock < count ? i0 + kBlock : count;
    T acc = 0;
#pragma omp simd reduction(+ : acc)
    for (int64_t i = i0; i < i1; ++i) acc += x[i] - x[i];
    if (!(acc == 0)) return false;
  }
  return true;
}

}  // namespace rrae_fast

#endif  // RRAE_FAST_COMMON_FINITE_H_
