// Narrow products (see narrow_product.h).
//
// A·X, "dot" form: out[i, :] = Σ_p A[i, p]·X[p, :]. X is packed into panels of 8·C columns,
// each stored p-major (X[p, panel] contiguous, zero-padded), and a tile of R rows of A times
// one panel accumulates in R·C vector registers while p runs over the whole row: per p, C
// loads of X, R broadcasts of A, R·C fused multiply-adds. The rows of a block of 24 stay in
// L2 across the panels, so A is read from memory once. A remainder of at most 4 columns is not
// padded: its tiles run their vectors along p instead (RowDotTile).
//
// Aᵀ·Y, "axpy" form: out[p, :] = Σ_i A[i, p]·Y[i, :]. A strip of 32 consecutive columns of A
// (one 128-byte piece of each row) times C columns of Y accumulates in 4·C vector registers
// while i runs over a block of rows: per row, 4 loads of A, C broadcasts of Y, 4·C fused
// multiply-adds. The strip's block of 128 rows is copied into a contiguous tile that stays in
// L1 across the panels of Y, and the next strips of its rows are prefetched, so again A is read
// from memory once. Two tiles take turns: the panels working on one strip copy the next one
// into the other, a slice of its rows each, so that those loads overlap arithmetic instead of
// stalling it. Y is packed row-major per panel of C columns.
//
// Both split their output among threads (rows of A·X, strips of Aᵀ·Y), so no reduction is
// needed. Accumulation is in float32 in the same order for every call: results do not depend
// on the number of threads.
#include "cpu/narrow_product.h"

#include <algorithm>

#include "cpu/avx2.h"

namespace rrae_fast::cpu {

namespace {

// ---- A·X ----------------------------------------------------------------------------------

// out[r, c] for r < R rows of A (row stride lda) and the `width` valid columns of one packed
// panel (n x 8C, p-major).
template <int R, int C>
RRAE_FAST_AVX2 void DotTile(int64_t n, const float* a, int64_t lda, const float* xp, float* out,
                            int64_t ldo, int64_t width) {
  __m256 acc[R][C];
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r) {
#pragma GCC unroll 8
    for (int c = 0; c < C; ++c) acc[r][c] = _mm256_setzero_ps();
  }
  for (int64_t p = 0; p < n; ++p) {
    __m256 x[C];
#pragma GCC unroll 8
    for (int c = 0; c < C; ++c) x[c] = _mm256_loadu_ps(xp + p * 8 * C + 8 * c);
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      const __m256 av = _mm256_broadcast_ss(a + r * lda + p);
#pragma GCC unroll 8
      for (int c = 0; c < C; ++c) acc[r][c] = _mm256_fmadd_ps(av, x[c], acc[r][c]);
    }
  }
  alignas(32) float lane[8];
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r) {
#pragma GCC unroll 8
    for (int c = 0; c < C; ++c) {
      _mm256_store_ps(lane, acc[r][c]);
      for (int l = 0; l < 8 && 8 * c + l < width; ++l) out[r + (8 * c + l) * ldo] = lane[l];
    }
  }
}

// The same for the last W <= 4 columns of X, unpacked (column-major, ld ldx): vectors run along
// p instead, each accumulator is one entry of out summed horizontally at the end, so that a
// narrow remainder is not padded to 8 columns.
template <int R, int W>
RRAE_FAST_AVX2 void RowDotTile(int64_t n, const float* a, int64_t lda, const float* x, int64_t ldx,
                               float* out, int64_t ldo) {
  __m256 acc[R][W];
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r) {
#pragma GCC unroll 8
    for (int w = 0; w < W; ++w) acc[r][w] = _mm256_setzero_ps();
  }
  const int64_t full = n - n % 8;
  for (int64_t p = 0; p < full; p += 8) {
    __m256 xv[W];
#pragma GCC unroll 8
    for (int w = 0; w < W; ++w) xv[w] = _mm256_loadu_ps(x + w * ldx + p);
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      const __m256 av = _mm256_loadu_ps(a + r * lda + p);
#pragma GCC unroll 8
      for (int w = 0; w < W; ++w) acc[r][w] = _mm256_fmadd_ps(av, xv[w], acc[r][w]);
    }
  }
  if (full < n) {
    const __m256i mask = FirstLanes(static_cast<int>(n - full));
    __m256 xv[W];
#pragma GCC unroll 8
    for (int w = 0; w < W; ++w) xv[w] = _mm256_maskload_ps(x + w * ldx + full, mask);
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      const __m256 av = _mm256_maskload_ps(a + r * lda + full, mask);
#pragma GCC unroll 8
      for (int w = 0; w < W; ++w) acc[r][w] = _mm256_fmadd_ps(av, xv[w], acc[r][w]);
    }
  }
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r) {
#pragma GCC unroll 8
    for (int w = 0; w < W; ++w) {
      __m128 h =
          _mm_add_ps(_mm256_castps256_ps128(acc[r][w]), _mm256_extractf128_ps(acc[r][w], 1));
      h = _mm_add_ps(h, _mm_movehl_ps(h, h));
      h = _mm_add_ss(h, _mm_movehdup_ps(h));
      out[r + w * ldo] = _mm_cvtss_f32(h);
    }
  }
}

struct DotPanel {
  int64_t col;     // first column of X
  int64_t width;   // valid columns, <= 8·vecs
  int vecs;        // C: vectors per row of the panel; 0 for a remainder of <= 4 columns
                   // taken by RowDotTile
  int64_t offset;  // start of the packed panel
};

// Rows per tile for C vectors per row: about twelve accumulators, as many as AVX2's sixteen
// registers allow beside the panel's row and a broadcast.
constexpr int DotRows(int vecs) { return vecs == 3 ? 4 : vecs == 2 ? 6 : 8; }

template <int C>
RRAE_FAST_AVX2 void DotRowsOfPanel(int64_t r0, int64_t r1, int64_t n, const float* a, int64_t lda,
                                   const float* xp, float* out, int64_t ldo, int64_t width) {
  constexpr int R = DotRows(C);
  int64_t r = r0;
  for (; r + R <= r1; r += R) DotTile<R, C>(n, a + r * lda, lda, xp, out + r, ldo, width);
  for (; r < r1; ++r) DotTile<1, C>(n, a + r * lda, lda, xp, out + r, ldo, width);
}

// Rows per tile for a remainder of W columns: again about twelve accumulators.
constexpr int RowDotRows(int w) { return w == 1 ? 8 : w == 2 ? 6 : w == 3 ? 4 : 3; }

template <int W>
RRAE_FAST_AVX2 void RowDotRowsOfPanel(int64_t r0, int64_t r1, int64_t n, const float* a,
                                      int64_t lda, const float* x, int64_t ldx, float* out,
                                      int64_t ldo) {
  constexpr int R = RowDotRows(W);
  int64_t r = r0;
  for (; r + R <= r1; r += R) RowDotTile<R, W>(n, a + r * lda, lda, x, ldx, out + r, ldo);
  for (; r < r1; ++r) RowDotTile<1, W>(n, a + r * lda, lda, x, ldx, out + r, ldo);
}

// ---- Aᵀ·Y ---------------------------------------------------------------------------------

// Rows of A per tile: 128 rows of a 128-byte strip (16 KiB). The tile is copied into a
// contiguous buffer that stays in L1 across the panels of Y: read in place, rows a power of
// two apart would fall into the same few cache sets and evict each other. The strips of one
// block of rows are taken one after the other, so that the block's rows (a few hundred pages)
// stay in the TLB and each row is read front to back.
constexpr int64_t kAxpyRows = 128;
// Prefetch distance along a row, in floats (two strips beyond the one copied), into L2: the rows
// of a tile are far apart, too far for the hardware prefetcher. Shorter tiles and a prefetch
// into L1 were slower (benchmarks/RESULTS.md, "Thresholds of the CPU kernel").
constexpr int64_t kAhead = 64;

// out[p0 .. p0 + 8P, c] (+)= Σ_i tile[i, :]·Y[i, c] for the `rows` rows of a packed tile of A
// (8P floats per row) and the C columns of one packed panel of Y (row-major, C per row). Only
// the first `last` <= 8 entries of the last of the P vectors belong to the output (masked
// loads and stores when fewer). `first`: start from zero instead of out. With kCopy (full
// strips, P = 4), rows [copy.begin, copy.end) of the next strip are also copied into its tile.
struct TileCopy {
  const float* from = nullptr;  // the next strip's first row in A
  int64_t lda = 0;
  float* to = nullptr;  // its tile (32 floats per row)
  int64_t begin = 0, end = 0;
};

template <int P, int C, bool kCopy = false>
RRAE_FAST_AVX2 void AxpyTile(int64_t rows, const float* tile, const float* yp, float* out,
                             int64_t ldo, int last, bool first, const TileCopy& copy = {}) {
  static_assert(!kCopy || P == 4, "only full strips are copied");
  const __m256i mask = FirstLanes(last);
  __m256 acc[C][P];
#pragma GCC unroll 8
  for (int c = 0; c < C; ++c) {
#pragma GCC unroll 8
    for (int v = 0; v < P; ++v) {
      const float* o = out + c * ldo + 8 * v;
      acc[c][v] = first ? _mm256_setzero_ps()
                        : (v == P - 1 ? _mm256_maskload_ps(o, mask) : _mm256_loadu_ps(o));
    }
  }
  for (int64_t i = 0; i < rows; ++i) {
    if constexpr (kCopy) {
      if (i >= copy.begin && i < copy.end) {
        const float* row = copy.from + i * copy.lda;  // and the strip after it into L2
        _mm_prefetch(reinterpret_cast<const char*>(row + kAhead), _MM_HINT_T1);
        _mm_prefetch(reinterpret_cast<const char*>(row + kAhead + 16), _MM_HINT_T1);
#pragma GCC unroll 4
        for (int v = 0; v < 4; ++v) {
          _mm256_store_ps(copy.to + i * 32 + 8 * v, _mm256_loadu_ps(row + 8 * v));
        }
      }
    }
    __m256 av[P];
#pragma GCC unroll 8
    for (int v = 0; v < P; ++v) av[v] = _mm256_load_ps(tile + i * 8 * P + 8 * v);
#pragma GCC unroll 8
    for (int c = 0; c < C; ++c) {
      const __m256 y = _mm256_broadcast_ss(yp + i * C + c);
#pragma GCC unroll 8
      for (int v = 0; v < P; ++v) acc[c][v] = _mm256_fmadd_ps(av[v], y, acc[c][v]);
    }
  }
#pragma GCC unroll 8
  for (int c = 0; c < C; ++c) {
#pragma GCC unroll 8
    for (int v = 0; v < P; ++v) {
      float* o = out + c * ldo + 8 * v;
      if (v == P - 1) {
        _mm256_maskstore_ps(o, mask, acc[c][v]);
      } else {
        _mm256_storeu_ps(o, acc[c][v]);
      }
    }
  }
}

struct AxpyPanel {
  int64_t col;     // first column of Y
  int vecs;        // C: columns in the panel, 1..3
  int64_t offset;  // start of the packed panel
};

// Copies `rows` rows of 8P floats (row stride lda, the last vector `last` wide) into a tile,
// and prefetches the next strip of each row (rows are pages apart, which the hardware
// prefetcher does not follow).
template <int P>
RRAE_FAST_AVX2 void CopyStrip(int64_t rows, const float* from, int64_t lda, int last,
                              float* tile) {
  const __m256i mask = FirstLanes(last);
  for (int64_t i = 0; i < rows; ++i) {
    const float* row = from + i * lda;
    _mm_prefetch(reinterpret_cast<const char*>(row + kAhead), _MM_HINT_T1);
    _mm_prefetch(reinterpret_cast<const char*>(row + kAhead + 16), _MM_HINT_T1);
#pragma GCC unroll 8
    for (int v = 0; v < P; ++v) {
      const __m256 x =
          v == P - 1 ? _mm256_maskload_ps(row + 8 * v, mask) : _mm256_loadu_ps(row + 8 * v);
      _mm256_store_ps(tile + i * 8 * P + 8 * v, x);
    }
  }
}

// One tile of a strip times one panel of Y (AxpyTile for its number of columns).
template <int P, bool kCopy = false>
RRAE_FAST_AVX2 void PanelTile(const AxpyPanel& pn, int64_t i0, int64_t rows, const float* tile,
                              const float* pack, float* out, int64_t ldo, int last, bool first,
                              const TileCopy& copy = {}) {
  const float* yp = pack + pn.offset + i0 * pn.vecs;
  float* o = out + pn.col * ldo;
  switch (pn.vecs) {
    case 3:
      AxpyTile<P, 3, kCopy>(rows, tile, yp, o, ldo, last, first, copy);
      break;
    case 2:
      AxpyTile<P, 2, kCopy>(rows, tile, yp, o, ldo, last, first, copy);
      break;
    default:
      AxpyTile<P, 1, kCopy>(rows, tile, yp, o, ldo, last, first, copy);
      break;
  }
}

// Rows [i0, i0 + rows) of the full strips [u0, u1) (32 columns each) times every panel of Y.
// Panel j of a strip also copies the j-th slice of the next strip's rows into the other tile, so
// that the copy overlaps the arithmetic instead of stalling before it. The alternatives tried
// (the first panel copying all of the next strip, other row blocks and strip widths, rows split
// among threads) were slower (benchmarks/RESULTS.md, "Thresholds of the CPU kernel").
RRAE_FAST_AVX2 void AxpyStrips(int64_t i0, int64_t rows, const float* a, int64_t lda, int64_t u0,
                               int64_t u1, const std::vector<AxpyPanel>& panels, const float* pack,
                               float* out, int64_t ldo) {
  alignas(64) float tiles[2][kAxpyRows * 32];
  CopyStrip<4>(rows, a + i0 * lda + 32 * u0, lda, 8, tiles[0]);
  const bool first = i0 == 0;
  const int64_t slices = static_cast<int64_t>(panels.size());
  for (int64_t u = u0; u < u1; ++u) {
    const float* tile = tiles[(u - u0) & 1];
    TileCopy copy{a + i0 * lda + 32 * (u + 1), lda, tiles[(u - u0 + 1) & 1], 0, 0};
    for (int64_t j = 0; j < slices; ++j) {
      if (u + 1 < u1) {
        copy.begin = rows * j / slices;
        copy.end = rows * (j + 1) / slices;
        PanelTile<4, true>(panels[j], i0, rows, tile, pack, out + 32 * u, ldo, 8, first, copy);
      } else {
        PanelTile<4>(panels[j], i0, rows, tile, pack, out + 32 * u, ldo, 8, first);
      }
    }
  }
}

// The same for the narrow piece of P <= 4 vectors at column p0 (its last vector `last` wide),
// copied before its panels.
template <int P>
RRAE_FAST_AVX2 void AxpyPiece(int64_t i0, int64_t rows, const float* a, int64_t lda, int64_t p0,
                              int last, const std::vector<AxpyPanel>& panels, const float* pack,
                              float* out, int64_t ldo) {
  alignas(64) float tile[kAxpyRows * 8 * P];
  CopyStrip<P>(rows, a + i0 * lda + p0, lda, last, tile);
  for (const AxpyPanel& pn : panels) {
    PanelTile<P>(pn, i0, rows, tile, pack, out + p0, ldo, last, i0 == 0);
  }
}

}  // namespace

void NarrowProductAX(int64_t m, int64_t n, int64_t b, const float* a, int64_t lda, const float* x,
                     int64_t ldx, float* out, int64_t ldo, std::vector<float>& pack,
                     const ProductThreads& threads) {
  std::vector<DotPanel> panels;
  int64_t size = 0;
  for (int64_t c = 0; c < b;) {
    const int64_t left = b - c;
    if (left <= 4 && c > 0) {
      panels.push_back(DotPanel{c, left, 0, 0});
      break;
    }
    const int vecs = left > 16 ? 3 : left > 8 ? 2 : 1;
    const int64_t width = std::min<int64_t>(left, 8 * vecs);
    panels.push_back(DotPanel{c, width, vecs, size});
    size += n * 8 * vecs;
    c += width;
  }
  pack.resize(size);
  for (const DotPanel& pn : panels) {
    if (pn.vecs == 0) continue;
    float* xp = pack.data() + pn.offset;
    const int64_t stride = 8 * pn.vecs;
    for (int64_t j = 0; j < stride; ++j) {
      if (j < pn.width) {
        const float* col = x + (pn.col + j) * ldx;
        for (int64_t p = 0; p < n; ++p) xp[p * stride + j] = col[p];
      } else {
        for (int64_t p = 0; p < n; ++p) xp[p * stride + j] = 0.0f;
      }
    }
  }
  // Rows in blocks of 24 (a multiple of every tile's row count): a block's rows stay in cache
  // while every panel passes over them.
  constexpr int64_t kBlock = 24;
  const int64_t blocks = (m + kBlock - 1) / kBlock;
  const int64_t parts = threads.Parts(blocks);
  const int64_t per_part = (blocks + parts - 1) / parts;
  auto job = [&](int64_t, int64_t part) {
    const int64_t end = std::min(m, (part + 1) * per_part * kBlock);
    for (int64_t r0 = part * per_part * kBlock; r0 < end; r0 += kBlock) {
      const int64_t r1 = std::min(end, r0 + kBlock);
      for (const DotPanel& pn : panels) {
        const float* xp = pack.data() + pn.offset;
        float* o = out + pn.col * ldo;
        const float* xc = x + pn.col * ldx;
        switch (pn.vecs) {
          case 0:
            switch (pn.width) {
              case 1:
                RowDotRowsOfPanel<1>(r0, r1, n, a, lda, xc, ldx, o, ldo);
                break;
              case 2:
                RowDotRowsOfPanel<2>(r0, r1, n, a, lda, xc, ldx, o, ldo);
                break;
              case 3:
                RowDotRowsOfPanel<3>(r0, r1, n, a, lda, xc, ldx, o, ldo);
                break;
              default:
                RowDotRowsOfPanel<4>(r0, r1, n, a, lda, xc, ldx, o, ldo);
                break;
            }
            break;
          case 3:
            DotRowsOfPanel<3>(r0, r1, n, a, lda, xp, o, ldo, pn.width);
            break;
          case 2:
            DotRowsOfPanel<2>(r0, r1, n, a, lda, xp, o, ldo, pn.width);
            break;
          default:
            DotRowsOfPanel<1>(r0, r1, n, a, lda, xp, o, ldo, pn.width);
            break;
        }
      }
    }
  };
  if (parts == 1) {
    job(0, 0);
  } else {
    ParallelFor(parts, parts, *threads.schedule, job);
  }
}

void NarrowProductATY(int64_t m, int64_t n, int64_t b, const float* a, int64_t lda, const float* y,
                      int64_t ldy, float* out, int64_t ldo, std::vector<float>& pack,
                      const ProductThreads& threads) {
  std::vector<AxpyPanel> panels;
  for (int64_t c = 0; c < b;) {
    const int vecs = static_cast<int>(std::min<int64_t>(3, b - c));
    panels.push_back(AxpyPanel{c, vecs, c * m});
    c += vecs;
  }
  pack.resize(m * b);
  for (const AxpyPanel& pn : panels) {
    float* yp = pack.data() + pn.offset;
    for (int j = 0; j < pn.vecs; ++j) {
      const float* col = y + (pn.col + j) * ldy;
      for (int64_t i = 0; i < m; ++i) yp[i * pn.vecs + j] = col[i];
    }
  }
  // Strips of 32 columns of A, then pieces of 8 (the last one masked) for the rest.
  const int64_t full = n / 32;
  const int64_t pieces = (n - 32 * full + 7) / 8;
  const int64_t units = full + pieces;
  const int64_t parts = threads.Parts(units);
  const int64_t per_part = (units + parts - 1) / parts;
  auto job = [&](int64_t, int64_t part) {
    const int64_t end = std::min(units, (part + 1) * per_part);
    const int64_t begin = part * per_part, strips_end = std::min(end, full);
    for (int64_t i0 = 0; i0 < m; i0 += kAxpyRows) {
      const int64_t rows = std::min(kAxpyRows, m - i0);
      if (begin < strips_end) {
        AxpyStrips(i0, rows, a, lda, begin, strips_end, panels, pack.data(), out, ldo);
      }
      for (int64_t u = std::max(begin, full); u < end; ++u) {
        const int64_t p0 = 32 * full + 8 * (u - full);
        const int last = static_cast<int>(std::min<int64_t>(8, n - p0));
        AxpyPiece<1>(i0, rows, a, lda, p0, last, panels, pack.data(), out, ldo);
      }
    }
  };
  if (parts == 1) {
    job(0, 0);
  } else {
    ParallelFor(parts, parts, *threads.schedule, job);
  }
}

}  // namespace rrae_fast::cpu
