// The float64 Gram matrix of a matrix's shorter side (see gram_matrix.h).
#include "cpu/gram_matrix.h"

#include <algorithm>
#include <cstdint>
#include <vector>

#include "cpu/avx2.h"
#include "cpu/blas.h"

namespace rrae_fast::cpu {

// Rows of Y converted to float64 per block: enough to amortise a GEMM call, few enough to stay
// in cache (~256 KiB).
int64_t GramRowBlock(int64_t p, int64_t q) { return std::min(q, std::max<int64_t>(8, 32768 / p)); }

double* AlignedRows(std::vector<double>& rows) {
  const auto address = reinterpret_cast<std::uintptr_t>(rows.data());
  return rows.data() + ((64 - address % 64) % 64) / sizeof(double);
}

// Rows [r0, r0 + count) of Y as float64 into out (count x p, row-major; column-major p x count).
template <typename T>
void LoadGramRows(const T* a, int64_t m, int64_t n, int64_t r0, int64_t count, double* out) {
  if (m >= n) {  // Y = A
    for (int64_t t = 0; t < count; ++t) {
      const T* src = a + (r0 + t) * n;
      double* dst = out + t * n;
      for (int64_t c = 0; c < n; ++c) dst[c] = src[c];
    }
  } else {  // Y = Aᵀ: row r of Y is column r of A
    for (int64_t i = 0; i < m; ++i) {
      const T* src = a + i * n + r0;
      for (int64_t t = 0; t < count; ++t) out[t * m + i] = src[t];
    }
  }
}

template void LoadGramRows<float>(const float*, int64_t, int64_t, int64_t, int64_t, double*);
template void LoadGramRows<double>(const double*, int64_t, int64_t, int64_t, int64_t, double*);

namespace {

// g (p x p, row-major) += the upper triangle's 4 x 8 tiles of Bᵀ B for the count x p row-major
// block B (p a multiple of 8), each tile's 8 accumulators in registers over all of B's rows;
// the tiles below the diagonal are left alone.
RRAE_FAST_AVX2 void GramTilesAvx2(int64_t p, int64_t count, const double* rows, bool first,
                                  double* g) {
  for (int64_t i0 = 0; i0 < p; i0 += 4) {
    for (int64_t j0 = i0 / 8 * 8; j0 < p; j0 += 8) {
      __m256d acc[4][2];
      for (int i = 0; i < 4; ++i) {
        acc[i][0] = first ? _mm256_setzero_pd() : _mm256_loadu_pd(g + (i0 + i) * p + j0);
        acc[i][1] = first ? _mm256_setzero_pd() : _mm256_loadu_pd(g + (i0 + i) * p + j0 + 4);
      }
      const double* y = rows;
      for (int64_t t = 0; t < count; ++t, y += p) {
        const __m256d b0 = _mm256_loadu_pd(y + j0), b1 = _mm256_loadu_pd(y + j0 + 4);
        for (int i = 0; i < 4; ++i) {
          const __m256d a = _mm256_broadcast_sd(y + i0 + i);
          acc[i][0] = _mm256_fmadd_pd(a, b0, acc[i][0]);
          acc[i][1] = _mm256_fmadd_pd(a, b1, acc[i][1]);
        }
      }
      for (int i = 0; i < 4; ++i) {
        _mm256_storeu_pd(g + (i0 + i) * p + j0, acc[i][0]);
        _mm256_storeu_pd(g + (i0 + i) * p + j0 + 4, acc[i][1]);
      }
    }
  }
}

// g (p x p) = Yᵀ Y in float64, over blocks of rows of Y: by the tiles above where p is a
// multiple of 8 and AVX2 runs (about half the arithmetic of a GEMM; the lower triangle is then
// mirrored), else one GEMM per block. Where Y is one block, it is left in the row buffer.
template <typename T>
void GramMatrix(const Lapack<double>& la, const T* a, int64_t m, int64_t n,
                std::vector<double>& row_buffer, std::vector<double>& gram) {
  const int64_t p = std::min(m, n), q = std::max(m, n), block = GramRowBlock(p, q);
  double* rows = AlignedRows(row_buffer);
  double* g = gram.data();
  const bool tiles = p % 8 == 0 && Avx2Available();
  for (int64_t r0 = 0; r0 < q; r0 += block) {
    const int64_t count = std::min(block, q - r0);
    LoadGramRows(a, m, n, r0, count, rows);
    if (tiles) {
      GramTilesAvx2(p, count, rows, r0 == 0, g);
      continue;
    }
    // Column-major: G (p x p) += B Bᵀ with B = rows (p x count).
    blas::Gemm(la, 'N', 'T', p, p, count, 1.0, rows, p, rows, p, r0 == 0 ? 0.0 : 1.0, g, p);
  }
  if (tiles) {
    for (int64_t i = 1; i < p; ++i) {
      for (int64_t j = 0; j < i; ++j) g[i * p + j] = g[j * p + i];
    }
  }
}

}  // namespace

template <typename T>
void GramOfShortSide(const Lapack<double>& la, const T* a, int64_t m, int64_t n,
                     std::vector<double>& rows, std::vector<double>& g) {
  const int64_t p = std::min(m, n), q = std::max(m, n);
  rows.resize(GramRowBlock(p, q) * p + 8);  // + 8: room to start at a 64-byte boundary
  g.resize(p * p);
  GramMatrix(la, a, m, n, rows, g);
}
template void GramOfShortSide<float>(const Lapack<double>&, const float*, int64_t, int64_t,
                                     std::vector<double>&, std::vector<double>&);
template void GramOfShortSide<double>(const Lapack<double>&, const double*, int64_t, int64_t,
                                      std::vector<double>&, std::vector<double>&);

}  // namespace rrae_fast::cpu
