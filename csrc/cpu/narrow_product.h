// Products of a large row-major float32 matrix with a narrow block: A·X and Aᵀ·Y.
//
// The iterative path spends most of its time in these: A is m x n (thousands each), the block
// a few dozen columns wide. A general GEMM packs A for every call, an extra sweep over the
// largest operand; the kernels here read A once, straight from its row-major layout, and keep
// the (packed) block in cache. AVX2 + FMA; `Avx2Available()` (avx2.h) says whether they may
// run (the caller uses BLAS otherwise).
#ifndef RRAE_FAST_CPU_NARROW_PRODUCT_H_
#define RRAE_FAST_CPU_NARROW_PRODUCT_H_

#include <algorithm>
#include <cstdint>
#include <vector>

#include "common/export.h"
#include "common/parallel.h"

namespace rrae_fast::cpu {

// Threads for one product: `workers` jobs on `schedule` (null: the calling thread alone).
struct ProductThreads {
  const Scheduler* schedule = nullptr;
  int64_t workers = 1;

  // Jobs for a product of `units` independent pieces: one per worker (at most one per piece),
  // enough to balance, few enough to keep the overhead small; 1 without a schedule.
  int64_t Parts(int64_t units) const {
    if (schedule == nullptr || workers < 2) return 1;
    return std::max<int64_t>(1, std::min(workers, units));
  }
};

// out (m x b, column-major, leading dimension ldo) = A·X, with A row-major m x n (row stride
// lda) and X column-major n x b (leading dimension ldx). `pack` is scratch (resized here).
RRAE_FAST_CORE_API void NarrowProductAX(int64_t m, int64_t n, int64_t b, const float* a,
                                        int64_t lda, const float* x, int64_t ldx, float* out,
                                        int64_t ldo, std::vector<float>& pack,
                                        const ProductThreads& threads);

// out (n x b, column-major, leading dimension ldo) = Aᵀ·Y, with A row-major m x n (row stride
// lda) and Y column-major m x b (leading dimension ldy). `pack` is scratch (resized here).
RRAE_FAST_CORE_API void NarrowProductATY(int64_t m, int64_t n, int64_t b, const float* a,
                                         int64_t lda, const float* y, int64_t ldy, float* out,
                                         int64_t ldo, std::vector<float>& pack,
                                         const ProductThreads& threads);

}  // namespace rrae_fast::cpu

#endif  // RRAE_FAST_CPU_NARROW_PRODUCT_H_
