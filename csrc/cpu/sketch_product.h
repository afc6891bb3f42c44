// The random sketch A·Ω of the iterative path's cold start, with a sparse Ω that costs one
// sweep over A instead of a product.
//
// Ω (n x b, b >= 8) is made of pieces of 8 rows: rows 8g .. 8g + 7 of Ω hold a signed 8 x 8
// Hadamard block, D_g·H₈ (D_g a diagonal of random signs, H₈ the Sylvester–Hadamard matrix),
// in columns o_g .. o_g + 7, o_g a random offset; everything else is zero (the last piece
// has the n mod 8 rows left). Every row of Ω has 8 entries ±1 and every block is orthogonal,
// so no direction of a single piece is lost; pieces land on overlapping random windows, which
// mixes them. As the start of subspace iteration it does the work of a dense random Ω (the
// iteration and its residual test decide the result, not the start), and A·Ω costs a few
// operations per entry of A, where a dense Ω costs b multiply-adds. Signs and offsets come
// from `seed` alone: the same seed gives the same Ω, bit for bit, on any number of threads.
// AVX2; callers check `NarrowProductsAvailable()` first.
#ifndef RRAE_FAST_CPU_SKETCH_PRODUCT_H_
#define RRAE_FAST_CPU_SKETCH_PRODUCT_H_

#include <cstdint>
#include <vector>

#include "cpu/narrow_product.h"

namespace rrae_fast::cpu {

// out (m x b, column-major, leading dimension ldo) = A·Ω, with A row-major m x n (row stride
// lda) and Ω as above for this `seed`. Requires b >= 8. `scratch` is resized here.
void SketchProductAX(int64_t m, int64_t n, int64_t b, const float* a, int64_t lda, uint64_t seed,
                     float* out, int64_t ldo, std::vector<float>& scratch,
                     const ProductThreads& threads);

// Windows per piece for an n x b Ω: enough that every column of Ω is hit by ~16 pieces.
int64_t SketchWindows(int64_t n, int64_t b);

// Ω itself, column-major n x b (leading dimension ldo), for tests and for products on paths
// without AVX2.
void SketchMatrix(int64_t n, int64_t b, uint64_t seed, float* out, int64_t ldo);

}  // namespace rrae_fast::cpu

#endif  // RRAE_FAST_CPU_SKETCH_PRODUCT_H_
