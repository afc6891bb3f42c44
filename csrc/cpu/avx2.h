// Shared pieces of the AVX2 + FMA kernels (narrow products, sparse sketch, parts of the Gram
// path). Functions marked RRAE_FAST_AVX2 run only where `Avx2Available()` says so; the rest of
// the build stays generic x86-64.
#ifndef RRAE_FAST_CPU_AVX2_H_
#define RRAE_FAST_CPU_AVX2_H_

#include <immintrin.h>

#include "common/export.h"

#define RRAE_FAST_AVX2 __attribute__((target("avx2,fma")))

namespace rrae_fast::cpu {

// True when this CPU has AVX2 and FMA and they have not been turned off (SetAvx2Allowed).
RRAE_FAST_CORE_API bool Avx2Available();

// Turns the AVX2 kernels off (false) or back on where the CPU has them (true), for the whole
// process; the generic code and BLAS take their place. For tests of those fallbacks.
RRAE_FAST_CORE_API void SetAvx2Allowed(bool allowed);

// A mask of the first `count` (0..8) lanes, for the masked loads and stores of a partial vector.
RRAE_FAST_AVX2 inline __m256i FirstLanes(int count) {
  alignas(32) static const int kBits[16] = {-1, -1, -1, -1, -1, -1, -1, -1,
                                            0,  0,  0,  0,  0,  0,  0,  0};
  return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(kBits + 8 - count));
}

}  // namespace rrae_fast::cpu

#endif  // RRAE_FAST_CPU_AVX2_H_
