// Iterative path: randomized subspace iteration with Rayleigh–Ritz and a residual stopping test.
//
// The row-major m x n input A is the column-major n x m matrix T = Aᵀ, so A·X = Tᵀ·X and
// Aᵀ·X = T·X are plain GEMMs on the input as it lies in memory.
//
// The iteration alternates sides. It holds an orthonormal block B (left: m x b, or right:
// n x b) and its product P with A (P = AᵀB or A B). Each pass:
//
//   P = Q_P R_P,  R_P = X Σ Zᵀ           QR of the product, small b x b SVD
//   Ritz vectors  B Z_k  and  Q_P X_k     (U = B Z, V = Q_P X on the left; swapped on the right)
//   op(Q_P X_k)                           one product of width k with A (op = A or Aᵀ)
//   residual      op(Q_P X_k) − (B Z_k) Σ = A V − U Σ (left) or Aᵀ U − V Σ (right); the other
//                                           residual vanishes by construction
//
// and stops once every residual column is <= tol·σ_1. Otherwise it completes the next product
// P' = op(Q_P) = op(Q_P X) Xᵀ with the remaining b − k columns, and B = Q_P, P = P'.
// In float32 a pass that tests takes Z and Σ from the eigenvectors of PᵀP instead,
// and Q_P X = P Z Σ⁻¹ without a QR of P (GramRitz below); if it goes on, those columns,
// orthonormalised, are the next B, and P' = op(B).
//
// The start is B = orth([init | A Ω]) with Ω random: sparse in float32 where n is large enough
// against b (8 x 8 signed Hadamard blocks at random offsets, sketch_product.h; A·Ω is then one
// sweep over A instead of a product), dense otherwise. A cold start skips the test of its
// first pass (a random sketch is never accurate enough for a noisy matrix), so it converges at
// the earliest after three products of width b and one of width k; where the budget is short
// and that first pass shows a flat tail, it tests at once (see the loop). A warm start whose
// init has w >= k columns starts from B = orth(init) alone, width w; if init already spans
// the answer it converges after one product of width w and one of width k. If not, after that
// pass B gains b − w random columns (and P their products) and the iteration goes on at width
// b. Where the first full-width test finds Ritz values too flat for the budget, it checks the
// k-th pair alone first (a pass of width 1) and gives up on it without the full test.
// Workspace is O((m + n)·b + b²); no m x n temporary is formed.
#include "cpu/subspace_svd.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <type_traits>

#include "common/finite.h"
#include "cpu/avx2.h"
#include "cpu/blas.h"
#include "cpu/narrow_product.h"
#include "cpu/sketch_product.h"

namespace rrae_fast::cpu {

namespace {

// Deterministic uniform numbers in [-1, 1) (splitmix64), none zero: cheap, and the same on
// every run.
template <typename T>
void FillRandom(T* x, int64_t count, uint64_t seed) {
  uint64_t state = seed * 0x9E3779B97F4A7C15ull + 0x2545F4914F6CDD1Dull;
  for (int64_t i = 0; i < count; ++i) {
    uint64_t z = (state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    const T v = static_cast<T>(static_cast<double>(z >> 11) * (2.0 / 9007199254740992.0) - 1.0);
    x[i] = v != T(0) ? v : T(0.5);  // no zeros: see SubspaceResult::not_finite
  }
}

// R ← R1 rounded to T, upper-triangular b x b (column-major).
template <typename T>
void OneFactor(int64_t b, const double* r1, T* r) {
  for (int64_t j = 0; j < b; ++j) {
    for (int64_t i = 0; i < b; ++i) r[i + j * b] = i <= j ? static_cast<T>(r1[i + j * b]) : T(0);
  }
}

// R ← R2·R1 for upper-triangular b x b factors (column-major, ld b), in float64 by BLAS's
// triangular product; R may alias neither.
template <typename T>
void TriangularProduct(const Lapack<double>& la, int64_t b, const T* r2, const double* r1, T* r,
                       std::vector<double>& work) {
  work.resize(2 * b * b);
  double* r2d = work.data();
  double* out = work.data() + b * b;
  for (int64_t i = 0; i < b * b; ++i) r2d[i] = double(r2[i]);
  // trmm reads all of its right-hand side: R1's lower triangle, which the Cholesky factorisation
  // leaves as the buffer held it (another factor, a Gram matrix's eigenvectors), must be zero.
  for (int64_t j = 0; j < b; ++j) {
    for (int64_t i = 0; i < b; ++i) out[i + j * b] = i <= j ? r1[i + j * b] : 0.0;
  }
  char side = 'L', uplo = 'U', trans = 'N', diag = 'N';
  lapack_int B = b;
  double one = 1;
  la.trmm(&side, &uplo, &trans, &diag, &B, &B, &one, r2d, &B, out, &B);
  OneFactor(b, out, r);
}

// Householder QR of X (rows x cols, rows >= cols) in place; R (upper, cols x cols) if asked.
template <typename T>
Status HouseholderQr(const Lapack<T>& la, int64_t rows, int64_t cols, T* x, T* r,
                     SubspaceScratch<T>& sc) {
  lapack_int M = rows, N = cols, LDA = rows, lwork = -1, info = 0;
  sc.tau.resize(cols);
  T size = 0;
  la.geqrf(&M, &N, x, &LDA, sc.tau.data(), &size, &lwork, &info);
  T size2 = 0;
  la.orgqr(&M, &N, &N, x, &LDA, sc.tau.data(), &size2, &lwork, &info);
  lwork = static_cast<lapack_int>(std::max(size, size2)) + 1;
  sc.work.resize(lwork);
  la.geqrf(&M, &N, x, &LDA, sc.tau.data(), sc.work.data(), &lwork, &info);
  if (info != 0) return Status::Error(Lapack<T>::Name("geqrf") + " info=" + std::to_string(info));
  if (r != nullptr) {
    for (int64_t j = 0; j < cols; ++j) {
      for (int64_t i = 0; i < cols; ++i) r[i + j * cols] = i <= j ? x[i + j * rows] : T(0);
    }
  }
  la.orgqr(&M, &N, &N, x, &LDA, sc.tau.data(), sc.work.data(), &lwork, &info);
  if (info != 0) return Status::Error(Lapack<T>::Name("orgqr") + " info=" + std::to_string(info));
  return Status::Ok();
}

// One Cholesky-QR pass: X ← X·R⁻¹ with RᵀR = XᵀX. False (X untouched) when X is too
// ill-conditioned for the pass to be accurate: CholeskyQR2 needs cond(X) well below ε^(-1/2).
template <typename T>
bool CholeskyQrPass(const Lapack<T>& la, const blas::RowSplit& split, int64_t rows, int64_t cols,
                    T* x, T* r, std::vector<T>& partial) {
  blas::SyrkUpperTRows<T>(la, split, rows, cols, x, rows, r, cols, partial);
  if (blas::PotrfUpper<T>(la, cols, r, cols) != 0) return false;
  T lo = std::numeric_limits<T>::infinity(), hi = 0;
  for (int64_t i = 0; i < cols; ++i) {
    lo = std::min(lo, std::abs(r[i + i * cols]));
    hi = std::max(hi, std::abs(r[i + i * cols]));
  }
  const T guard = T(10) * std::sqrt(std::numeric_limits<T>::epsilon());
  if (!(lo > guard * hi)) return false;  // also catches NaN
  blas::TrsmRightUpperRows<T>(la, split, rows, cols, r, cols, x, rows);
  return true;
}

// g (cols x cols, upper triangle) = XᵀX in float64 for the float32 block x (rows x cols), through
// a float64 copy of x in sc.xd.
void GramF64(const Lapack<double>& la, const blas::RowSplit& split, int64_t rows, int64_t cols,
             const float* x, double* g, SubspaceScratch<float>& sc) {
  sc.xd.resize(rows * cols);
  std::copy(x, x + rows * cols, sc.xd.begin());
  blas::SyrkUpperTRows<double>(la, split, rows, cols, sc.xd.data(), rows, g, cols, sc.partial_d);
}

// Whether the upper-triangular float64 factor r (cols x cols) has a 1-norm condition number
// below `limit` by LAPACK's estimate (dtrcon, O(cols²)).
template <typename T>
bool ConditionBelow(const Lapack<double>& la, int64_t cols, double* r, double limit,
                    SubspaceScratch<T>& sc) {
  char norm = '1', uplo = 'U', diag = 'N';
  lapack_int n = cols, info = 0;
  double rcond = 0;
  sc.eig_work.resize(3 * cols);
  sc.iwork.resize(std::max<int64_t>(sc.iwork.size(), cols));
  la.trcon(&norm, &uplo, &diag, &n, r, &n, &rcond, sc.eig_work.data(), sc.iwork.data(), &info);
  return info == 0 && rcond * limit > 1;
}

// Where a float32 block's factor is at most this conditioned (dtrcon's 1-norm estimate), its
// float64 pass with a float64 solve leaves it orthonormal to ~ε64·cond² <= 1e-6 in the worst
// case and far better in practice: no second pass. Measured on 4096 x 4096 rrae-like matrices
// (cold starts, k = 16 / 64 / 256 / 1024, first products P = AᵀB with estimates 4e4-6e4): the
// right factors V = Q_P Z come out with |VᵀV − I| <= 6e-8, against 1.4e-7-2.6e-7 with two passes.
constexpr double kOnePassCondition = 1e5;

// First Cholesky-QR pass with the Gram matrix formed and factored in float64 whatever T is:
// X ← X·R⁻¹ with RᵀR = XᵀX. In float64 the pass stays accurate up to cond(X) ~ 1e7, which
// covers the sketches of decaying spectra that defeat a float32 Gram matrix. False (X
// untouched) when X is more ill-conditioned than that, or rank-deficient. With `alone` (float32
// only), a well-conditioned X (kOnePassCondition) gets the float64 solve, which finishes it
// (sc.one_factor).
template <typename T>
bool CholeskyQrPassF64(const LapackTable& table, const blas::RowSplit& split, int64_t rows,
                       int64_t cols, T* x, double* r, SubspaceScratch<T>& sc, bool alone) {
  const Lapack<double>& la = table.f64;
  if constexpr (std::is_same_v<T, float>) {
    // float32 entries can neither overflow nor underflow a float64 Gram matrix: no scaling.
    GramF64(la, split, rows, cols, x, r, sc);
    if (blas::PotrfUpper<double>(la, cols, r, cols) != 0) return false;
    double lo = std::numeric_limits<double>::infinity(), hi = 0;
    for (int64_t i = 0; i < cols; ++i) {
      lo = std::min(lo, std::abs(r[i + i * cols]));
      hi = std::max(hi, std::abs(r[i + i * cols]));
    }
    if (!(lo > 10.0 * std::sqrt(std::numeric_limits<double>::epsilon()) * hi)) return false;
    if (alone && hi < kOnePassCondition * lo &&
        ConditionBelow(la, cols, r, kOnePassCondition, sc)) {
      // One pass instead of two: the float64 solve costs less than the second float32 pass
      // (benchmarks/RESULTS.md, "Thresholds of the CPU kernel").
      blas::TrsmRightUpperRows<double>(la, split, rows, cols, r, cols, sc.xd.data(), rows);
      for (int64_t i = 0; i < rows * cols; ++i) x[i] = static_cast<float>(sc.xd[i]);
      sc.one_factor = true;
    } else if (hi < 1e4 * lo) {
      // Moderately conditioned (the usual case): the solve in float32 with R rounded to
      // float32. It is backward stable (X = X R⁻¹·R to float32 rounding, R the rounded
      // factor returned) and leaves X·R⁻¹ orthogonal to ~cond(X)·ε32 <= 1e-3, which the
      // second pass corrects; the float64 solve costs twice as much.
      sc.rf.resize(cols * cols);
      for (int64_t i = 0; i < cols * cols; ++i) {
        sc.rf[i] = static_cast<float>(r[i]);
        r[i] = sc.rf[i];
      }
      blas::TrsmRightUpperRows<float>(table.f32, split, rows, cols, sc.rf.data(), cols, x, rows);
    } else {
      blas::TrsmRightUpperRows<double>(la, split, rows, cols, r, cols, sc.xd.data(), rows);
      for (int64_t i = 0; i < rows * cols; ++i) x[i] = static_cast<float>(sc.xd[i]);
    }
    return true;
  } else {
    double* xd = x;
    // Columns are scaled to unit max-norm first, so that the Gram matrix neither overflows nor
    // underflows at extreme scales (entries of 1e±200 in float64); R absorbs the scaling.
    sc.colscale.resize(cols);
    for (int64_t j = 0; j < cols; ++j) {
      double big = 0;
      for (int64_t i = 0; i < rows; ++i) big = std::max(big, std::abs(xd[i + j * rows]));
      if (!(big > 0) || !std::isfinite(big)) return false;  // zero or non-finite column
      sc.colscale[j] = big;
      for (int64_t i = 0; i < rows; ++i) xd[i + j * rows] /= big;
    }
    blas::SyrkUpperTRows<double>(la, split, rows, cols, xd, rows, r, cols, sc.partial_d);
    if (blas::PotrfUpper<double>(la, cols, r, cols) != 0) {
      for (int64_t j = 0; j < cols; ++j) {
        for (int64_t i = 0; i < rows; ++i) xd[i + j * rows] *= sc.colscale[j];
      }
      return false;
    }
    double lo = std::numeric_limits<double>::infinity(), hi = 0;
    for (int64_t i = 0; i < cols; ++i) {
      lo = std::min(lo, std::abs(r[i + i * cols]));
      hi = std::max(hi, std::abs(r[i + i * cols]));
    }
    // CholeskyQR loses orthogonality like cond(X)²·ε; keep cond(X) below ~ 0.1·ε^(-1/2).
    if (!(lo > 10.0 * std::sqrt(std::numeric_limits<double>::epsilon()) * hi)) {
      for (int64_t j = 0; j < cols; ++j) {
        for (int64_t i = 0; i < rows; ++i) xd[i + j * rows] *= sc.colscale[j];
      }
      return false;
    }
    blas::TrsmRightUpperRows<double>(la, split, rows, cols, r, cols, xd, rows);
    // X D⁻¹ = Q R'  =>  X = Q (R' D).
    for (int64_t j = 0; j < cols; ++j) {
      for (int64_t i = 0; i <= j; ++i) r[i + j * cols] *= sc.colscale[j];
    }
    return true;
  }
}

// Whether the upper-triangular cols x cols factor r (column-major) is within 0.1 of I in the
// Frobenius norm, so that cond(r) <= 1.25.
template <typename T>
bool NearIdentity(int64_t cols, const T* r) {
  double off = 0;
  for (int64_t j = 0; j < cols; ++j) {
    for (int64_t i = 0; i <= j; ++i) {
      const double e = double(r[i + j * cols]) - (i == j ? 1.0 : 0.0);
      off += e * e;
    }
  }
  return off <= 0.01;  // also false for NaN
}

// What Orthonormalize may assume of its block.
enum class Block {
  kAny,
  kBasisOnly,        // only its span matters: it is multiplied by A and dropped
  kNearOrthonormal,  // likely orthonormal already (a warm start's init, e.g. a previous U)
};

// Orthonormalises X (rows x cols) in place; if r is given, X_in = X_out·R with R upper.
// CholeskyQR2 (first pass in float64, second in T), Householder QR when X is too
// ill-conditioned for it (e.g. the sketch of an exactly rank-deficient matrix). The first
// pass leaves X orthogonal to ~cond(X)·ε32 in float32 (<= 1e-3) and to ~cond(X)²·ε64
// (<= 1e-2) otherwise: enough for a kBasisOnly block, which gets that pass alone. A
// kNearOrthonormal block gets a pass in T first; if its factor is within 0.1 of I, X was
// orthonormal to begin with and that pass is as accurate as a second. A float32 block whose
// float64 factor is well conditioned (kOnePassCondition) is finished by its float64 pass, with
// a float64 solve.
template <typename T>
Status Orthonormalize(const LapackTable& table, const blas::RowSplit& split, int64_t rows,
                      int64_t cols, T* x, T* r, SubspaceScratch<T>& sc,
                      Block block = Block::kAny) {
  const Lapack<T>& la = table.Get<T>();
  sc.g.resize(cols * cols);
  sc.two_factors = false;
  sc.one_factor = false;
  if (block == Block::kNearOrthonormal && r == nullptr &&
      CholeskyQrPass(la, split, rows, cols, x, sc.g.data(), sc.partial)) {
    if (NearIdentity(cols, sc.g.data()) ||
        CholeskyQrPass(la, split, rows, cols, x, sc.g.data(), sc.partial)) {
      return Status::Ok();
    }
    return HouseholderQr(la, rows, cols, x, r, sc);
  }
  sc.rd.resize(cols * cols);
  if (CholeskyQrPassF64(table, split, rows, cols, x, sc.rd.data(), sc,
                        block != Block::kBasisOnly)) {
    if (r == nullptr && block == Block::kBasisOnly) return Status::Ok();
    if (sc.one_factor) {
      if (r != nullptr) OneFactor(cols, sc.rd.data(), r);
      return Status::Ok();
    }
    bool second = CholeskyQrPass(la, split, rows, cols, x, sc.g.data(), sc.partial);
    if (!second) {
      // Rare: the first pass left X too ill-conditioned; finish with Householder.
      Status st = HouseholderQr(la, rows, cols, x, sc.g.data(), sc);
      if (!st.ok) return st;
    }
    sc.two_factors = true;
    if (r != nullptr)
      TriangularProduct(table.f64, cols, sc.g.data(), sc.rd.data(), r, sc.colscale);
    return Status::Ok();
  }
  return HouseholderQr(la, rows, cols, x, r, sc);
}

// Whether a product of width `cols` with A (float32) goes to the narrow kernels rather than
// BLAS: they read A once for the whole width, which wins while the width is small enough for
// the product to be bound by reading A; the crossovers (wider for A·X than for Aᵀ·Y, whose
// tiles are copied) are where they were measured (benchmarks/RESULTS.md, "Thresholds of the CPU
// kernel").
bool UseNarrowProducts(bool transposed, int64_t cols) {
  return (transposed ? cols <= 160 : cols <= 768) && Avx2Available();
}

// y[i + j·ldy] = x[i·ldx + j] for i < rows, j < cols: a row-major block into a column-major
// one (or back). Rows go in groups of 64, so that the writes run along contiguous stretches
// instead of one cache line per entry.
template <typename T>
void CopyTransposed(int64_t rows, int64_t cols, const T* x, int64_t ldx, T* y, int64_t ldy) {
  constexpr int64_t kRows = 64;
  for (int64_t i0 = 0; i0 < rows; i0 += kRows) {
    const int64_t i1 = std::min(rows, i0 + kRows);
    for (int64_t j = 0; j < cols; ++j) {
      for (int64_t i = i0; i < i1; ++i) y[i + j * ldy] = x[i * ldx + j];
    }
  }
}

// Whether every row of the column-major rows x cols block x holds a normal entry (non-zero and
// not subnormal, so that no flush-to-zero mode turns it into a zero).
template <typename T>
bool RowsReachable(int64_t rows, int64_t cols, const T* x) {
  std::vector<unsigned char> hit(rows, 0);
  for (int64_t j = 0; j < cols; ++j) {
    const T* c = x + j * rows;
    for (int64_t i = 0; i < rows; ++i) {
      hit[i] |= std::abs(c[i]) >= std::numeric_limits<T>::min() ? 1 : 0;
    }
  }
  return std::all_of(hit.begin(), hit.end(), [](unsigned char h) { return h != 0; });
}

// SVD of the b x b matrix in sc.r (destroyed) into sc.us, sc.sig, sc.vst. False on failure.
template <typename T>
bool SmallSvd(const Lapack<T>& la, int64_t b, SubspaceScratch<T>& sc) {
  char jobz = 'S';
  lapack_int B = b, lwork = -1, info = 0;
  T size = 0;
  la.gesdd(&jobz, &B, &B, sc.r.data(), &B, sc.sig.data(), sc.us.data(), &B, sc.vst.data(), &B,
           &size, &lwork, sc.iwork.data(), &info);
  lwork = static_cast<lapack_int>(size) + 1;
  sc.work.resize(lwork);
  la.gesdd(&jobz, &B, &B, sc.r.data(), &B, sc.sig.data(), sc.us.data(), &B, sc.vst.data(), &B,
           sc.work.data(), &lwork, sc.iwork.data(), &info);
  return info == 0;
}

// Where σ_1/σ_k exceeds this, the Ritz vectors P·M of GramRitz are orthonormalised before
// their test (see the loop). Measured without that step: a warm start from a rotated exact
// basis leaves VᵀV within 5e-7 of I at σ_1/σ_k = 10 and 5e-6 at 1e3, and fails its test at 1e4.
constexpr double kGramRitzSpread = 32;

// Whether the upper triangle of the column-major w x w matrix g is finite (the lower one is
// not written by the Gram products here and holds whatever the buffer held before).
bool UpperFinite(int64_t w, const double* g) {
  for (int64_t j = 0; j < w; ++j) {
    if (!AllFinite(g + j * w, j + 1)) return false;
  }
  return true;
}

// Eigenvalues (ascending, into lambda) and eigenvectors (over the w x w matrix a, whose upper
// triangle holds the symmetric matrix) by LAPACK's syevd, after its workspace query. LAPACK's
// info.
template <typename T>
lapack_int Syevd(const Lapack<T>& la, int64_t w, T* a, T* lambda, std::vector<T>& work,
                 std::vector<lapack_int>& iwork) {
  char jobz = 'V', uplo = 'U';
  lapack_int W = w, lwork = -1, liwork = -1, info = 0, isize = 0;
  T size = 0;
  la.syevd(&jobz, &uplo, &W, a, &W, lambda, &size, &lwork, &isize, &liwork, &info);
  lwork = static_cast<lapack_int>(size) + 1;
  liwork = isize + 1;
  work.resize(lwork);
  iwork.resize(std::max<int64_t>(iwork.size(), liwork));
  la.syevd(&jobz, &uplo, &W, a, &W, lambda, work.data(), &lwork, iwork.data(), &liwork, &info);
  return info;
}

// From this width on, GramRitz solves PᵀP's eigenproblem in float32 first: ssyevd takes about
// half of dsyevd's time, which matters only once the eigenproblem is a noticeable part of a
// sweep (benchmarks/RESULTS.md, "Thresholds of the CPU kernel").
constexpr int64_t kGramRitzSingleFrom = 512;
constexpr double kEps32 = std::numeric_limits<float>::epsilon();

// The eigenproblem of the float64 Gram matrix in sc.rd (left intact) in float32, for GramRitz:
// eigenvalues ascending into sc.lambda, eigenvectors into sc.r (w x w, a vector per column).
// ssyevd's eigenvalues are off by up to c·ε32·λ_1, c a modest number (the rounding of G to
// float32 included), so σ_j by ~c·ε32·σ_1·(σ_1/σ_j)/2, and the vector of λ_j leans towards that
// of λ_i by ~c·ε32·λ_1/|λ_i − λ_j|, which moves its residual by less than c·ε32·σ_1·(σ_1/σ_j)/2.
// For the k pairs the test looks at both stay within a few ε32·σ_1·S where σ_1/σ_k <= S =
// kGramRitzSpread, which is required here (else false, and the caller solves it in float64;
// false too where LAPACK fails). The residual test after it measures those pairs in any case.
bool SingleEigen(const Lapack<float>& la, int64_t w, int64_t k, SubspaceScratch<float>& sc) {
  // Rounded to float32 after scaling by a power of two that brings its largest diagonal entry
  // (the largest entry) near 1: G's entries reach σ_1² (1e74 at σ_1 = 1e37, 1e-60 at 1e-30).
  double big = 0;
  for (int64_t i = 0; i < w; ++i) big = std::max(big, sc.rd[i * (w + 1)]);
  if (!(big > 0) || !std::isfinite(big)) return false;
  int exponent = 0;
  std::frexp(big, &exponent);
  const double factor = std::ldexp(1.0, -exponent);
  for (int64_t j = 0; j < w; ++j) {  // the upper triangle, which ssyevd reads
    for (int64_t i = 0; i <= j; ++i)
      sc.r[i + j * w] = static_cast<float>(sc.rd[i + j * w] * factor);
  }
  sc.tau.resize(w);
  if (Syevd(la, w, sc.r.data(), sc.tau.data(), sc.work, sc.iwork) != 0) return false;
  for (int64_t j = 0; j < w; ++j) sc.lambda[j] = double(sc.tau[j]) / factor;
  const double top = sc.lambda[w - 1], kth = sc.lambda[w - k];
  return top > 0 && std::isfinite(top) && kth * kGramRitzSpread * kGramRitzSpread >= top;
}

// The Ritz pairs of a test from P's Gram matrix instead of P's QR and the SVD of R (float32
// only): G = PᵀP = Z Σ² Zᵀ, the Gram matrix in float64, so that P = (P Z Σ⁻¹) Σ Zᵀ with
// P Z Σ⁻¹ orthonormal. Fills sc.sig (Σ, descending), sc.vst (Zᵀ) and sc.us (M = Z Σ⁻¹) in
// float32, as SmallSvd fills Σ, Zᵀ and X from R, and leaves P as it is: the caller's P·M stands
// for Q_P X. Solved in float64, the eigenproblem loses nothing that matters here (σ_j to
// ~ε64·σ_1²/σ_j); from width kGramRitzSingleFrom on it is solved in float32 where that is
// accurate enough for the k pairs tested (SingleEigen). There the eigenvalues below
// w·ε32·λ_1 are not resolved: for j >= k, Σ holds σ_j's lower bound √(λ_j − w·ε32·λ_1) (Σ_b is
// the give-up rule's optimistic guess of σ_b, below) and M divides by at least √(w·ε32·λ_1),
// so that these columns of P·M, needed only if the iteration goes on, keep a norm of at most
// ~1 and are orthonormalised then. The float32 product P·M leaves column j orthonormal to
// ~ε32·σ_1/σ_j only, which the caller corrects where that is not small (see the loop). It costs
// about half of the QR route's two Cholesky passes and sgesdd (benchmarks/RESULTS.md,
// "Thresholds of the CPU kernel"). False where the eigensolver fails or, in float64,
// P is too ill-conditioned for P·M (σ_w < 1e-5·σ_1): the caller takes the QR route. Where σ_1
// is far from 1, P is scaled in place by a power of two that brings it near 1, and M to match,
// so that neither M's entries (z/σ) nor the terms of P·M leave float32's normal range
// (σ_1 = 1e37, or 1e-30).
bool GramRitz(const LapackTable& table, const blas::RowSplit& split, int64_t rows, int64_t w,
              int64_t k, float* p, SubspaceScratch<float>& sc) {
  const Lapack<double>& la = table.f64;
  sc.rd.resize(w * w);
  GramF64(la, split, rows, w, p, sc.rd.data(), sc);
  if (!UpperFinite(w, sc.rd.data())) return false;
  sc.lambda.resize(w);
  const bool single = w >= kGramRitzSingleFrom && SingleEigen(table.f32, w, k, sc);
  if (!single) {
    // On one BLAS thread where the products are split (as every BLAS call of the iteration):
    // OpenBLAS's two threads are faster on the eigenproblem alone, but they then spin for a
    // while and slow the next products by about as much (benchmarks/RESULTS.md, "Thresholds
    // of the CPU kernel").
    const lapack_int info = Syevd(la, w, sc.rd.data(), sc.lambda.data(), sc.eig_work, sc.iwork);
    const double top = sc.lambda[w - 1];  // ascending
    if (info != 0 || !(top > 0) || !std::isfinite(top) || !(sc.lambda[0] > 1e-10 * top)) {
      return false;
    }
  }
  const double top = sc.lambda[w - 1];
  const double unresolved = single ? double(w) * kEps32 * top : 0.0;
  int exponent = 0;
  std::frexp(std::sqrt(top), &exponent);  // σ_1 = f·2^exponent, f in [0.5, 1)
  if (exponent < -16 || exponent > 16) {
    const float scale = std::ldexp(1.0f, -exponent);
    for (int64_t i = 0; i < rows * w; ++i) p[i] *= scale;
  } else {
    exponent = 0;
  }
  const double least = std::sqrt(unresolved);  // M's smallest divisor
  for (int64_t j = 0; j < w; ++j) {
    const int64_t src = w - 1 - j;
    const double lambda = sc.lambda[src];
    const double sigma = j < k ? std::sqrt(lambda) : std::sqrt(std::max(lambda - unresolved, 0.0));
    sc.sig[j] = static_cast<float>(sigma);
    const double scaled = std::ldexp(std::max(std::sqrt(std::max(lambda, 0.0)), least), -exponent);
    for (int64_t i = 0; i < w; ++i) {
      const double z = single ? double(sc.r[i + src * w]) : sc.rd[i + src * w];
      sc.vst[j + i * w] = static_cast<float>(z);
      sc.us[i + j * w] = static_cast<float>(z / scaled);
    }
  }
  return true;
}

// One run of the iteration, step by step: Start, then Pass until one of them says it is done.
// Each step returns a Status (a LAPACK failure) and sets *done where the run is over: converged
// (the factors written), given up or unusable (the caller goes dense), or A not finite.
template <typename T>
class SubspaceIteration {
 public:
  SubspaceIteration(const LapackTable& table, int64_t m, int64_t n, int64_t k, const T* a,
                    SubspaceScratch<T>& sc, const SubspaceOptions& opt, SubspaceResult* result)
      : table_(table),
        la_(table.Get<T>()),
        m_(m),
        n_(n),
        k_(k),
        b_(opt.block),
        a_(a),
        sc_(sc),
        opt_(opt),
        result_(result) {}

  // The start block B and its product P = AᵀB: a warm start whose init holds at least k
  // columns begins with those alone (width w = their number, no sketch) and widens to b only
  // if its first test fails; any other start is B = orth([init | A Ω]) of width b.
  Status Start(const T* init, int64_t init_cols, bool* done);

  // One pass: the Ritz pairs of the current block (tested unless it is a cold first pass),
  // then the next product, the side flipped, and a narrow warm start widened.
  Status Pass(int64_t pass, T* u, T* s, T* vt, int64_t ldu, bool* done);

 private:
  // op(X) = Aᵀ·X for a block X on the left (m rows), A·X for one on the right (n rows).
  void Apply(bool left, int64_t cols, const T* x, T* out);
  // Where the budget is short and a cold first pass shows a flat tail in P's first Cholesky
  // factor: its triangular factor for a test now (true), else false.
  bool FlatTailTestsNow();
  // Residual column j of P' X − (B Z) Σ in units of σ_1, from column c of `next` and of `bz`.
  double Residual(int64_t c, int64_t j) const;
  // At the first test at full width, where even a residual of 1 could not reach tol at the
  // predicted rate within the budget: whether the k-th pair alone (a pass of width 1) gives up.
  bool KthPairGivesUp(double predicted, double left_passes);
  // The Ritz test of the current pass: Status, and *done where it converged (factors written)
  // or gave up; otherwise the product for the next pass is complete in `next` (or `qx`).
  Status Test(int64_t pass, bool gram, T* u, T* s, T* vt, int64_t ldu, bool* done);
  // A narrow warm start that did not converge: B gains b − w columns Ω and P their products.
  Status Widen();

  const LapackTable& table_;
  const Lapack<T>& la_;
  const int64_t m_, n_, k_, b_;
  const T* a_;
  SubspaceScratch<T>& sc_;
  const SubspaceOptions& opt_;
  SubspaceResult* result_;
  int64_t seeded_ = 0;  // columns of init in the start block
  int64_t w_ = 0;       // the width of B and P for now
  bool left_ = true;    // the side of `block`
  double previous_ = std::numeric_limits<double>::infinity();  // the last test's residual
};

template <typename T>
void SubspaceIteration<T>::Apply(bool left, int64_t cols, const T* x, T* out) {
  if constexpr (std::is_same_v<T, float>) {
    if (UseNarrowProducts(left, cols)) {
      const ProductThreads threads{opt_.threads.schedule, opt_.threads.workers};
      if (left) {
        NarrowProductATY(m_, n_, cols, a_, n_, x, m_, out, n_, sc_.pack, threads);
      } else {
        NarrowProductAX(m_, n_, cols, a_, n_, x, n_, out, m_, sc_.pack, threads);
      }
      result_->passes += 1;
      return;
    }
  }
  if (left) {
    blas::GemmRows<T>(la_, opt_.threads, 'N', 'N', n_, cols, m_, T(1), a_, n_, x, m_, T(0), out,
                      n_);
  } else {
    blas::GemmRows<T>(la_, opt_.threads, 'T', 'N', m_, cols, n_, T(1), a_, n_, x, n_, T(0), out,
                      m_);
  }
  result_->passes += 1;
}

template <typename T>
Status SubspaceIteration<T>::Start(const T* init, int64_t init_cols, bool* done) {
  const int64_t m = m_, n = n_;
  SubspaceScratch<T>& sc = sc_;
  if (init != nullptr && init_cols > 0 && AllFinite(init, m * init_cols)) {
    seeded_ = std::min(init_cols, b_);
    CopyTransposed(m, seeded_, init, init_cols, sc.block.data(), m);
  }
  w_ = seeded_ >= k_ ? seeded_ : b_;
  if (seeded_ < w_) {
    // The sketch A·Ω, Ω n x (w − seeded): sparse, one sweep over A, where that kernel runs and
    // Ω is tall enough for each of its columns to be hit (the measured gain:
    // benchmarks/RESULTS.md, "Thresholds of the CPU kernel"); dense pseudo-random otherwise.
    bool sketched = false;
    if constexpr (std::is_same_v<T, float>) {
      if (Avx2Available() && SketchCovers(n, w_ - seeded_)) {
        SketchProductAX(m, n, w_ - seeded_, a_, n, opt_.seed, sc.block.data() + seeded_ * m, m,
                        sc.pack, ProductThreads{opt_.threads.schedule, opt_.threads.workers});
        result_->passes += 1;
        sketched = true;
      }
    }
    if (!sketched) {
      FillRandom(sc.prod.data(), n * (w_ - seeded_), opt_.seed);
      Apply(false, w_ - seeded_, sc.prod.data(), sc.block.data() + seeded_ * m);
    }
    if (!AllFinite(sc.block.data() + seeded_ * m, m * (w_ - seeded_))) {
      result_->not_finite = true;
      *done = true;
      return Status::Ok();
    }
  }
  // A cold start only multiplies this block by Aᵀ (its first pass has no test).
  Status st =
      Orthonormalize(table_, opt_.threads, m, w_, sc.block.data(), static_cast<T*>(nullptr), sc,
                     seeded_ == 0 ? Block::kBasisOnly : Block::kNearOrthonormal);
  if (!st.ok) return st;
  // Without a sketch, P = AᵀB shows a NaN or infinity of A instead, provided every row of B
  // holds a normal (non-zero, not subnormal) entry: a non-finite A_ij times B_ic ≠ 0 is
  // non-finite (times zero too, but a BLAS may skip zeros), and no sum makes it finite again.
  const bool product_checks = seeded_ == w_ && RowsReachable(m, w_, sc.block.data());
  if (seeded_ == w_ && !product_checks && !AllFinite(a_, m * n)) {
    result_->not_finite = true;
    *done = true;
    return Status::Ok();
  }
  Apply(left_, w_, sc.block.data(), sc.prod.data());
  if (product_checks && !AllFinite(sc.prod.data(), n * w_)) {
    result_->not_finite = true;
    *done = true;
  }
  return Status::Ok();
}

template <typename T>
bool SubspaceIteration<T>::FlatTailTestsNow() {
  // At most three passes would follow (b >= r / 15 or so), and a flat tail stands out in P's
  // first Cholesky factor: its diagonal entry b is at least half its entry k (the columns
  // beyond k of P = AᵀB still hold new directions as large as the k-th; after a gap they would
  // be noise, ~1e-3 of it on a rank-k-plus-noise matrix). There, the iteration is unlikely to
  // converge within the budget, and testing now lets the give-up rule act one product and one
  // orthonormalisation earlier.
  SubspaceScratch<T>& sc = sc_;
  const int64_t b = b_, k = k_;
  if (!(w_ > k && opt_.tol > 0 && 2 * opt_.max_iters <= 4 && (sc.two_factors || sc.one_factor))) {
    return false;
  }
  const double rbb = std::abs(sc.rd[(b - 1) * (b + 1)]);
  const double rkk = std::abs(sc.rd[(k - 1) * (b + 1)]);
  if (!(rbb >= 0.5 * rkk)) return false;
  if (sc.one_factor) {
    OneFactor(w_, sc.rd.data(), sc.r.data());
  } else {
    TriangularProduct(table_.f64, w_, sc.g.data(), sc.rd.data(), sc.r.data(), sc.colscale);
  }
  return true;
}

template <typename T>
double SubspaceIteration<T>::Residual(int64_t c, int64_t j) const {
  const int64_t rows_b = left_ ? m_ : n_;
  const double unit = sc_.sig[0] > 0 ? 1.0 / double(sc_.sig[0]) : 1.0;
  double acc = 0;
  for (int64_t i = 0; i < rows_b; ++i) {
    const double e =
        (double(sc_.next[i + c * rows_b]) - double(sc_.bz[i + c * rows_b]) * double(sc_.sig[j])) *
        unit;
    acc += e * e;
  }
  return std::sqrt(acc);
}

template <typename T>
bool SubspaceIteration<T>::KthPairGivesUp(double predicted, double left_passes) {
  SubspaceScratch<T>& sc = sc_;
  const int64_t k = k_, w = w_;
  const int64_t rows_b = left_ ? m_ : n_, rows_p = left_ ? n_ : m_;
  blas::GemmRows<T>(la_, opt_.threads, 'N', 'T', rows_b, 1, w, T(1), sc.block.data(), rows_b,
                    sc.vst.data() + (k - 1), w, T(0), sc.bz.data(), rows_b);
  blas::GemmRows<T>(la_, opt_.threads, 'N', 'N', rows_p, 1, w, T(1), sc.prod.data(), rows_p,
                    sc.us.data() + (k - 1) * w, w, T(0), sc.qx.data(), rows_p);
  Apply(!left_, 1, sc.qx.data(), sc.next.data());
  const double last = Residual(0, k - 1);
  if (!std::isfinite(last)) return true;
  return last > opt_.tol &&
         (!(predicted < 1) || std::log(opt_.tol / last) / std::log(predicted) > left_passes);
}

template <typename T>
Status SubspaceIteration<T>::Test(int64_t pass, bool gram, T* u, T* s, T* vt, int64_t ldu,
                                  bool* done) {
  SubspaceScratch<T>& sc = sc_;
  const int64_t m = m_, n = n_, k = k_, b = b_, w = w_;
  const int64_t rows_b = left_ ? m : n, rows_p = left_ ? n : m;
  if (!gram && !SmallSvd(la_, w, sc)) {  // the caller goes dense
    *done = true;
    return Status::Ok();
  }
  const double tol = sc.sig[0] > 0 ? opt_.tol : 0.0;
  const double left_passes = double(2 * opt_.max_iters - pass - 1);
  // At the first test at full width the give-up rule below uses subspace iteration's predicted
  // rate σ_b/σ_k per pass. Where even a residual of 1 could not reach tol at that rate within
  // the budget (a flat spectrum), the residual of the k-th Ritz pair alone decides: it is at
  // most the worst one, so if it gives up, so would the full test, which is skipped.
  const bool first_full = w == b && previous_ == std::numeric_limits<double>::infinity();
  const double predicted = sc.sig[k - 1] > 0 ? double(sc.sig[b - 1] / sc.sig[k - 1]) : 0.0;
  if (first_full && tol > 0 &&
      (!(predicted < 1) || std::log(tol) / std::log(predicted) > left_passes) &&
      KthPairGivesUp(predicted, left_passes)) {
    *done = true;
    return Status::Ok();
  }
  // Ritz vectors B Z_k and Q_P X_k (Z_k = (Zᵀ)[:k, :]ᵀ, X_k = X[:, :k]); the test product
  // op(Q_P X_k) = P' X_k costs a pass of width k only.
  blas::GemmRows<T>(la_, opt_.threads, 'N', 'T', rows_b, k, w, T(1), sc.block.data(), rows_b,
                    sc.vst.data(), w, T(0), sc.bz.data(), rows_b);
  blas::GemmRows<T>(la_, opt_.threads, 'N', 'N', rows_p, w, w, T(1), sc.prod.data(), rows_p,
                    sc.us.data(), w, T(0), sc.qx.data(), rows_p);  // Q_P X, all w columns
  // From GramRitz, qx = P·M is orthonormal to ~ε32·σ_1/σ_j in column j: fine for the Ritz
  // vectors where σ_1/σ_k is small, else orthonormalised first (its leading k columns mix
  // among themselves only). The rest, needed only if the iteration goes on, is corrected then.
  bool orthonormal = !gram;
  Status st = Status::Ok();
  if (gram && double(sc.sig[k - 1]) * kGramRitzSpread < double(sc.sig[0])) {
    st = Orthonormalize(table_, opt_.threads, rows_p, w, sc.qx.data(), static_cast<T*>(nullptr),
                        sc);
    if (!st.ok) return st;
    orthonormal = true;
  }
  Apply(!left_, k, sc.qx.data(), sc.next.data());
  double worst = 0;
  for (int64_t j = 0; j < k; ++j) worst = std::max(worst, Residual(j, j));
  if (!std::isfinite(worst)) {
    *done = true;
    return Status::Ok();
  }
  if (worst > tol && w == b) {
    // Give up early when the contraction per pass cannot reach tol within the remaining budget
    // (flat or clustered spectra): the dense path is then cheaper. The rate is the observed one
    // once two tests exist; at the first test, subspace iteration's predicted (σ_b/σ_k) per
    // pass from the Ritz values (an optimistic guess: Ritz values of the trailing columns
    // underestimate σ_b). A narrow warm start widens first (Widen).
    const double rate = first_full ? predicted : worst / previous_;
    if (!(rate < 1) || std::log(tol / worst) / std::log(rate) > left_passes) {
      *done = true;
      return Status::Ok();
    }
  }
  if (w == b) previous_ = worst;
  if (worst <= tol) {
    const T* ucol = left_ ? sc.bz.data() : sc.qx.data();  // m x k
    const T* vcol = left_ ? sc.qx.data() : sc.bz.data();  // n x k = row-major Vt
    std::memcpy(vt, vcol, sizeof(T) * n * k);
    CopyTransposed(k, m, ucol, m, u, ldu);
    std::memcpy(s, sc.sig.data(), sizeof(T) * k);
    result_->converged = true;
    *done = true;
    return Status::Ok();
  }
  // Not yet: the rest of op(Q_P X), then P' = op(Q_P X) Xᵀ (X is orthogonal) into the buffer
  // of B, which is no longer needed.
  if (w > k) Apply(!left_, w - k, sc.qx.data() + k * rows_p, sc.next.data() + k * rows_b);
  if (!gram) {
    blas::GemmRows<T>(la_, opt_.threads, 'N', 'T', rows_b, w, w, T(1), sc.next.data(), rows_b,
                      sc.us.data(), w, T(0), sc.block.data(), rows_b);
    std::swap(sc.block, sc.next);
  } else {
    // qx spans P's columns: it becomes the block (Q = qx R⁻¹ where it was not orthonormal yet,
    // and P' = op(qx) R⁻¹ with it), and P' is op of it, not rotated.
    if (!orthonormal) {
      st = Orthonormalize(table_, opt_.threads, rows_p, w, sc.qx.data(), sc.r.data(), sc);
      if (!st.ok) return st;
      blas::TrsmRightUpperRows<T>(la_, opt_.threads, rows_b, w, sc.r.data(), w, sc.next.data(),
                                  rows_b);
    }
    std::swap(sc.prod, sc.qx);
  }
  return Status::Ok();
}

template <typename T>
Status SubspaceIteration<T>::Widen() {
  // B gains b − w columns Ω (scaled to unit norm on average) and P their products, then
  // B = B_in R⁻¹ is orthonormalised and P = A B_in R⁻¹ follows with a triangular solve.
  SubspaceScratch<T>& sc = sc_;
  const int64_t b = b_, w = w_;
  const int64_t rows_nb = left_ ? m_ : n_, rows_np = left_ ? n_ : m_;
  T* omega = sc.block.data() + w * rows_nb;
  FillRandom(omega, rows_nb * (b - w), opt_.seed);
  const T unit_norm = static_cast<T>(std::sqrt(3.0 / double(rows_nb)));
  for (int64_t i = 0; i < rows_nb * (b - w); ++i) omega[i] *= unit_norm;
  Apply(left_, b - w, omega, sc.prod.data() + w * rows_np);
  w_ = b;
  Status st = Orthonormalize(table_, opt_.threads, rows_nb, b, sc.block.data(), sc.r.data(), sc);
  if (!st.ok) return st;
  blas::TrsmRightUpperRows<T>(la_, opt_.threads, rows_np, b, sc.r.data(), b, sc.prod.data(),
                              rows_np);
  return Status::Ok();
}

template <typename T>
Status SubspaceIteration<T>::Pass(int64_t pass, T* u, T* s, T* vt, int64_t ldu, bool* done) {
  SubspaceScratch<T>& sc = sc_;
  const int64_t rows_p = left_ ? n_ : m_;
  // Ritz pairs from the random start alone are never accurate for a noisy matrix: skip the
  // test on a cold first pass (a warm start may already be converged), unless the spectrum
  // looks flat where the budget is short (FlatTailTestsNow).
  const bool cold_first = pass == 0 && seeded_ == 0;
  bool test = !cold_first;
  // A test in float32 takes its Ritz pairs from PᵀP (GramRitz) and leaves P as it is; the QR
  // of P and the SVD of R otherwise (and where GramRitz declines).
  bool gram = false;
  if constexpr (std::is_same_v<T, float>) {
    gram = test && GramRitz(table_, opt_.threads, rows_p, w_, k_, sc.prod.data(), sc);
  }
  if (!gram) {
    Status st = Orthonormalize(table_, opt_.threads, rows_p, w_, sc.prod.data(),
                               test ? sc.r.data() : nullptr, sc);
    if (!st.ok) return st;
  }
  if (cold_first && FlatTailTestsNow()) test = true;
  if (!test) {
    Apply(!left_, w_, sc.prod.data(), sc.next.data());
  } else {
    Status st = Test(pass, gram, u, s, vt, ldu, done);
    if (!st.ok || *done) return st;
  }
  // Q_P becomes the block, P' the product; the side flips.
  std::swap(sc.block, sc.prod);
  std::swap(sc.prod, sc.next);
  left_ = !left_;
  return w_ < b_ ? Widen() : Status::Ok();
}

}  // namespace

template <typename T>
Status SubspaceSvd(const LapackTable& table, int64_t m, int64_t n, int64_t k, int64_t ldu,
                   const T* a, const T* init, int64_t init_cols, T* u, T* s, T* vt,
                   SubspaceScratch<T>& sc, const SubspaceOptions& opt, SubspaceResult* result) {
  const int64_t b = opt.block;
  const int64_t big = std::max(m, n);
  for (auto* buf : {&sc.block, &sc.prod, &sc.next}) buf->resize(big * b);
  sc.bz.resize(big * k);
  sc.qx.resize(big * b);
  sc.r.resize(b * b);
  sc.us.resize(b * b);
  sc.vst.resize(b * b);
  sc.sig.resize(b);
  sc.iwork.resize(8 * b);
  *result = SubspaceResult{};
  // When the products are split among threads, every BLAS call here runs on one thread per
  // part: OpenBLAS's own threads stay awake (spinning) for a while after a call and would
  // compete with the parts of the next product (benchmarks/RESULTS.md,
  // "Thresholds of the CPU kernel").
  const bool split = opt.threads.schedule != nullptr && opt.threads.workers > 1;
  const OneBlasThread pin(split ? opt.threads.set_threads_local : nullptr,
                          opt.threads.inside_lease);

  SubspaceIteration<T> iteration(table, m, n, k, a, sc, opt, result);
  bool done = false;
  Status st = iteration.Start(init, init_cols, &done);
  for (int64_t pass = 0; st.ok && !done && pass < 2 * opt.max_iters; ++pass) {
    st = iteration.Pass(pass, u, s, vt, ldu, &done);
  }
  return st;
}

template Status SubspaceSvd<float>(const LapackTable&, int64_t, int64_t, int64_t, int64_t,
                                   const float*, const float*, int64_t, float*, float*, float*,
                                   SubspaceScratch<float>&, const SubspaceOptions&,
                                   SubspaceResult*);
template Status SubspaceSvd<double>(const LapackTable&, int64_t, int64_t, int64_t, int64_t,
                                    const double*, const double*, int64_t, double*, double*,
                                    double*, SubspaceScratch<double>&, const SubspaceOptions&,
                                    SubspaceResult*);

}  // namespace rrae_fast::cpu
