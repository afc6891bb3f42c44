// Sparse sketch product (see sketch_product.h).
//
// Rows of A are taken four at a time, each read front to back (four streams the hardware
// prefetcher follows). For each piece g of 8 columns and each of the rows: one load of the 8
// entries, their signs flipped by D_g (an exclusive or), the 8-point Walsh–Hadamard transform
// inside the vector (three butterflies: a lane permutation and a fused multiply-add with ±1
// each), then per window its signs E_gw and one unaligned add into the row of a row-major
// staging copy of A·Ω. Staging rows have b + 8 entries, so that a window running past the
// last column needs no special case: the overhang is folded back onto the first columns once
// the row is done. Blocks of 64 rows are then transposed into the column-major result. Rows
// are split among threads by blocks; every entry of the result is summed in the same order
// whatever the split.
#include "cpu/sketch_product.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>

#include "cpu/avx2.h"

namespace rrae_fast::cpu {

namespace {

constexpr int64_t kPiece = 8;     // rows of Ω per Hadamard block
constexpr int64_t kTileRows = 4;  // rows of A streamed together
constexpr int64_t kOutRows = 64;  // rows per block of the final transposition

uint64_t Mix(uint64_t z) {  // splitmix64's finaliser
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// Random bits for window w of piece g (w = -1: the piece's row signs).
uint64_t Bits(uint64_t seed, int64_t g, int64_t w) {
  return Mix(seed * 0x9E3779B97F4A7C15ull + 0x2545F4914F6CDD1Dull +
             static_cast<uint64_t>(g + 1) * 0xD1B54A32D192ED03ull +
             static_cast<uint64_t>(w + 2) * 0x8CB92BA72F3D8DD7ull);
}

// The pieces' random choices. Sign patterns are 8 bits; bit j negates lane j.
struct Layout {
  int64_t pieces = 0;
  int64_t windows = 0;           // per piece
  std::vector<uint32_t> d_in;    // pieces: the row signs D_g
  std::vector<uint32_t> window;  // pieces x windows: offset << 8 | column signs
};

Layout MakeLayout(int64_t n, int64_t b, uint64_t seed) {
  Layout lay;
  lay.pieces = (n + kPiece - 1) / kPiece;
  lay.windows = SketchWindows(n, b);
  lay.d_in.resize(lay.pieces);
  lay.window.resize(lay.pieces * lay.windows);
  for (int64_t g = 0; g < lay.pieces; ++g) {
    lay.d_in[g] = static_cast<uint32_t>(Bits(seed, g, -1) & 0xFF);
    for (int64_t w = 0; w < lay.windows; ++w) {
      // Windows of one piece never overlap, so that no entry of A cancels against itself:
      // every entry reaches 8·windows entries of A·Ω (a NaN or infinity of A shows there).
      // A draw that lands within 8 of another window is redrawn; with at most b / 16
      // windows, those forbid fewer than 15/16 of the b offsets.
      uint64_t z = 0, offset = 0;
      for (int64_t attempt = 0;; ++attempt) {
        z = Bits(seed, g, w * 1024 + attempt);
        offset = (z >> 8) % static_cast<uint64_t>(b);
        bool clear = true;
        for (int64_t v = 0; v < w; ++v) {
          const int64_t d = std::abs(static_cast<int64_t>(offset) -
                                     static_cast<int64_t>(lay.window[g * lay.windows + v] >> 8));
          clear = clear && std::min(d, b - d) >= kPiece;
        }
        if (clear) break;
      }
      lay.window[g * lay.windows + w] = static_cast<uint32_t>(offset << 8 | (z & 0xFF));
    }
  }
  return lay;
}

// H₈[j, l] = (−1)^popcount(j & l).
float Hadamard8(int64_t j, int64_t l) { return (__builtin_popcountll(j & l) & 1) ? -1.0f : 1.0f; }

// The sign bits of lanes whose bit is set in `bits` (an exclusive or with it negates them).
RRAE_FAST_AVX2 inline __m256 SignMask(uint32_t bits) {
  const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  const __m256i b = _mm256_srlv_epi32(_mm256_set1_epi32(static_cast<int>(bits)), lane);
  return _mm256_castsi256_ps(_mm256_slli_epi32(b, 31));
}

// x ← H₈·x across the 8 lanes.
RRAE_FAST_AVX2 inline __m256 Hadamard8Lanes(__m256 x) {
  const __m256 s1 = _mm256_setr_ps(1, -1, 1, -1, 1, -1, 1, -1);
  const __m256 s2 = _mm256_setr_ps(1, 1, -1, -1, 1, 1, -1, -1);
  const __m256 s3 = _mm256_setr_ps(1, 1, 1, 1, -1, -1, -1, -1);
  x = _mm256_fmadd_ps(x, s1, _mm256_permute_ps(x, 0xB1));             // lanes (1, 0, 3, 2, ...)
  x = _mm256_fmadd_ps(x, s2, _mm256_permute_ps(x, 0x4E));             // lanes (2, 3, 0, 1, ...)
  return _mm256_fmadd_ps(x, s3, _mm256_permute2f128_ps(x, x, 0x01));  // halves swapped
}

// Rows r0 .. r0 + rows (rows <= kTileRows) of A·Ω into the row-major z, whose rows have b + 8
// entries: a window that runs past column b − 1 goes on into the last 8, which the caller
// folds back onto columns 0 .. 6.
RRAE_FAST_AVX2 void SketchRows(int64_t r0, int64_t rows, int64_t n, int64_t b, const float* a,
                               int64_t lda, const Layout& lay, float* z) {
  const int64_t ldz = b + kPiece;
  std::memset(z + r0 * ldz, 0, sizeof(float) * rows * ldz);
  const int64_t full = n / kPiece;
  const int64_t windows = lay.windows;
  __m256 y[kTileRows];
  for (int64_t g = 0; g < lay.pieces; ++g) {
    const __m256 flip = SignMask(lay.d_in[g]);
    if (g < full) {
      for (int64_t r = 0; r < rows; ++r) {
        y[r] =
            Hadamard8Lanes(_mm256_xor_ps(_mm256_loadu_ps(a + (r0 + r) * lda + g * kPiece), flip));
      }
    } else {
      const __m256i mask = FirstLanes(static_cast<int>(n - full * kPiece));
      for (int64_t r = 0; r < rows; ++r) {
        y[r] = Hadamard8Lanes(
            _mm256_xor_ps(_mm256_maskload_ps(a + (r0 + r) * lda + g * kPiece, mask), flip));
      }
    }
    for (int64_t w = 0; w < windows; ++w) {
      const uint32_t win = lay.window[g * windows + w];
      const __m256 sign = SignMask(win & 0xFF);
      const int64_t o = win >> 8;
      for (int64_t r = 0; r < rows; ++r) {
        float* t = z + (r0 + r) * ldz + o;
        _mm256_storeu_ps(t, _mm256_add_ps(_mm256_loadu_ps(t), _mm256_xor_ps(y[r], sign)));
      }
    }
  }
}

int64_t WindowCap(int64_t b) { return std::max<int64_t>(1, std::min(kPiece, b / 16)); }

}  // namespace

int64_t SketchWindows(int64_t n, int64_t b) {
  // Each column of Ω should meet ~16 pieces: with p = ⌈n / 8⌉ pieces of s windows at random
  // offsets, a column is missed by all of them with probability (1 − 8 / b)^(p·s), about
  // exp(−8·p·s / b) <= exp(−16) when 8·p·s >= 16·b. At most 8 windows, and at most b / 16
  // (so that the windows of one piece fit apart easily).
  const int64_t pieces = (n + kPiece - 1) / kPiece;
  const int64_t wanted = (2 * b + pieces - 1) / std::max<int64_t>(pieces, 1);
  return std::clamp<int64_t>(wanted, 1, WindowCap(b));
}

bool SketchCovers(int64_t n, int64_t b) {
  return b >= kPiece && 2 * b <= (n + kPiece - 1) / kPiece * WindowCap(b);
}

void SketchMatrix(int64_t n, int64_t b, uint64_t seed, float* out, int64_t ldo) {
  for (int64_t c = 0; c < b; ++c) std::fill(out + c * ldo, out + c * ldo + n, 0.0f);
  const Layout lay = MakeLayout(n, b, seed);
  for (int64_t g = 0; g < lay.pieces; ++g) {
    for (int64_t w = 0; w < lay.windows; ++w) {
      const uint32_t win = lay.window[g * lay.windows + w];
      for (int64_t j = 0; j < kPiece && g * kPiece + j < n; ++j) {
        const float dj = (lay.d_in[g] >> j) & 1u ? -1.0f : 1.0f;
        for (int64_t l = 0; l < kPiece; ++l) {
          const float dl = (win >> l) & 1u ? -1.0f : 1.0f;
          out[(g * kPiece + j) + ((win >> 8) + l) % b * ldo] += dj * dl * Hadamard8(j, l);
        }
      }
    }
  }
}

void SketchProductAX(int64_t m, int64_t n, int64_t b, const float* a, int64_t lda, uint64_t seed,
                     float* out, int64_t ldo, std::vector<float>& scratch,
                     const ProductThreads& threads) {
  const Layout lay = MakeLayout(n, b, seed);
  const int64_t ldz = b + kPiece;
  scratch.resize(m * ldz);
  float* z = scratch.data();  // A·Ω, row-major, 8 columns of wrap-around beyond b
  const int64_t blocks = (m + kOutRows - 1) / kOutRows;
  const int64_t parts = threads.Parts(blocks);
  const int64_t per_part = (blocks + parts - 1) / parts;
  auto job = [&](int64_t, int64_t part) {
    const int64_t end = std::min(m, (part + 1) * per_part * kOutRows);
    for (int64_t i0 = part * per_part * kOutRows; i0 < end; i0 += kOutRows) {
      const int64_t i1 = std::min(end, i0 + kOutRows);
      for (int64_t r0 = i0; r0 < i1; r0 += kTileRows) {
        SketchRows(r0, std::min(kTileRows, i1 - r0), n, b, a, lda, lay, z);
      }
      // The block's rows, their wrap-around folded back, transposed into the column-major
      // result.
      for (int64_t i = i0; i < i1; ++i) {
        for (int64_t c = 0; c < kPiece - 1; ++c) z[i * ldz + c] += z[i * ldz + b + c];
      }
      for (int64_t c = 0; c < b; ++c) {
        float* o = out + c * ldo;
        for (int64_t i = i0; i < i1; ++i) o[i] = z[i * ldz + c];
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
