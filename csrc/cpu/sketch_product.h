// The random sketch A·Ω of the iterative path's cold start, with a sparse Ω that costs one
// sweep over A instead of a product.
//
// Ω (n x b, b >= 8) is made of pieces of 8 rows. Piece g has s windows (SketchWindows) at
// random offsets o_gw, which never overlap: rows 8g .. 8g + 7 of Ω hold D_g·H₈·E_gw in
// columns o_gw .. o_gw + 7 (mod b, so windows wrap around), with H₈ the Sylvester–Hadamard
// matrix and D_g, E_gw diagonals of random signs; everything else is zero (the last piece has
// the n mod 8 rows left). Every row of Ω has 8·s entries ±1, each piece is orthogonal
// (Ω_g Ω_gᵀ = 8·s·I), so no direction within a piece is lost, and pieces land on overlapping
// random windows, which mixes them (condition numbers of 1.1–3.1 for the iterative path's
// sizes). As the start of subspace iteration it does the work of a dense random Ω (the
// iteration and its residual test decide the result, not the start), and A·Ω costs a few
// operations per entry of A where a dense Ω costs b multiply-adds: one sweep over A, bound by
// memory (benchmarks/RESULTS.md, "Thresholds of the CPU kernel"). Signs and
// offsets come from `seed` alone: the same seed gives the same Ω, bit for bit, on any number
// of threads. AVX2; callers check `Avx2Available()` first.
#ifndef RRAE_FAST_CPU_SKETCH_PRODUCT_H_
#define RRAE_FAST_CPU_SKETCH_PRODUCT_H_

#include <cstdint>
#include <vector>

#include "common/export.h"
#include "cpu/narrow_product.h"

namespace rrae_fast::cpu {

// out (m x b, column-major, leading dimension ldo) = A·Ω, with A row-major m x n (row stride
// lda) and Ω as above for this `seed`. Requires b >= 8. `scratch` is resized here.
RRAE_FAST_CORE_API void SketchProductAX(int64_t m, int64_t n, int64_t b, const float* a,
                                        int64_t lda, uint64_t seed, float* out, int64_t ldo,
                                        std::vector<float>& scratch,
                                        const ProductThreads& threads);

// Windows per piece for an n x b Ω: enough that every column of Ω is hit by ~16 pieces,
// where SketchCovers(n, b) (n large enough against b; b >= 8). Where it does not, some
// columns of Ω are likely zero, and a dense random Ω is the better start.
int64_t SketchWindows(int64_t n, int64_t b);
bool SketchCovers(int64_t n, int64_t b);

// Ω itself, column-major n x b (leading dimension ldo), for tests.
RRAE_FAST_CORE_API void SketchMatrix(int64_t n, int64_t b, uint64_t seed, float* out, int64_t ldo);

}  // namespace rrae_fast::cpu

#endif  // RRAE_FAST_CPU_SKETCH_PRODUCT_H_
