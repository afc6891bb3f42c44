// The float64 Gram matrix G = Yᵀ Y of the shorter side of a row-major m x n matrix A, with
// Y = A (m >= n) or Aᵀ (m < n), p = min(m, n), q = max(m, n): the first stage of the Gram path
// (gram_svd.h) and of the shifted Gram solves (shifted_gram_solve.h). Unscaled.
#ifndef RRAE_FAST_CPU_GRAM_MATRIX_H_
#define RRAE_FAST_CPU_GRAM_MATRIX_H_

#include <cstdint>
#include <vector>

#include "cpu/lapack.h"

namespace rrae_fast::cpu {

// g (p x p, row-major) = Yᵀ Y in float64, over blocks of rows of Y converted to float64 in
// `rows` (a block of GramRowBlock(p, q) rows; where Y is one block, it is left there, from
// AlignedRows(rows)). Sizes both vectors.
template <typename T>
void GramOfShortSide(const Lapack<double>& la, const T* a, int64_t m, int64_t n,
                     std::vector<double>& rows, std::vector<double>& g);

// Rows of Y converted to float64 per block: enough to amortise a GEMM call, few enough to stay
// in cache (~256 KiB).
int64_t GramRowBlock(int64_t p, int64_t q);

// The block of rows in `rows` from its first 64-byte boundary: the Gram tiles read its rows as
// whole cache lines (the offset's effect: benchmarks/RESULTS.md, "Thresholds of the CPU
// kernel").
double* AlignedRows(std::vector<double>& rows);

// Rows [r0, r0 + count) of Y as float64 into out (count x p, row-major).
template <typename T>
void LoadGramRows(const T* a, int64_t m, int64_t n, int64_t r0, int64_t count, double* out);

}  // namespace rrae_fast::cpu

#endif  // RRAE_FAST_CPU_GRAM_MATRIX_H_
