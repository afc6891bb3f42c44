// Iterative path: randomized subspace iteration with Rayleigh–Ritz and a residual stopping test.
//
// The row-major m x n input A is the column-major n x m matrix T = Aᵀ, so A·X = Tᵀ·X and
// Aᵀ·X = T·X are plain GEMMs on the input as it lies in memory.
//
//   start:   Q = orth([init | A Ω]), W = AᵀQ                  (Ω pseudo-random)
//   iterate: Q_W = orth(W)                                      (right subspace)
//            A Q_W = Q_Y R_Y,  R_Y = X Σ Zᵀ                     (GEMM, QR, small b x b SVD)
//            U = Q_Y X_k,  V = Q_W Z_k                          (Ritz vectors: A V = U Σ exactly)
//            W = AᵀQ_Y                                          (GEMM)
//            residual Aᵀ U − V Σ = W X_k − V Σ: stop once every column is <= tol·σ_1
//
// The W of the residual test is the next iteration's W, so a test costs no extra pass over A:
// a cold start that converges at the first test reads A four times, each further iteration
// twice. Workspace is O((m + n)·b + b²); no m x n temporary is formed.
#include "cpu/subspace_svd.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <type_traits>

#include "cpu/blas.h"

namespace rrae_fast::cpu {

namespace {

// Deterministic uniform numbers in [-1, 1) (splitmix64): cheap, and the same on every run.
template <typename T>
void FillRandom(T* x, int64_t count, uint64_t seed) {
  uint64_t state = seed * 0x9E3779B97F4A7C15ull + 0x2545F4914F6CDD1Dull;
  for (int64_t i = 0; i < count; ++i) {
    uint64_t z = (state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    x[i] = static_cast<T>(static_cast<double>(z >> 11) * (2.0 / 9007199254740992.0) - 1.0);
  }
}

// R ← R2·R1 for upper-triangular b x b factors (column-major, ld b); R may alias neither.
template <typename T>
void TriangularProduct(int64_t b, const T* r2, const double* r1, T* r) {
  for (int64_t j = 0; j < b; ++j) {
    for (int64_t i = 0; i < b; ++i) {
      double acc = 0;
      for (int64_t l = i; l <= j; ++l) acc += double(r2[i + l * b]) * r1[l + j * b];
      r[i + j * b] = i <= j ? static_cast<T>(acc) : T(0);
    }
  }
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
bool CholeskyQrPass(const Lapack<T>& la, int64_t rows, int64_t cols, T* x, T* r) {
  blas::SyrkUpperT<T>(la, rows, cols, T(1), x, rows, T(0), r, cols);
  if (blas::PotrfUpper<T>(la, cols, r, cols) != 0) return false;
  T lo = std::numeric_limits<T>::infinity(), hi = 0;
  for (int64_t i = 0; i < cols; ++i) {
    lo = std::min(lo, std::abs(r[i + i * cols]));
    hi = std::max(hi, std::abs(r[i + i * cols]));
  }
  const T guard = T(10) * std::sqrt(std::numeric_limits<T>::epsilon());
  if (!(lo > guard * hi)) return false;  // also catches NaN
  blas::TrsmRightUpper<T>(la, rows, cols, r, cols, x, rows);
  return true;
}

// First Cholesky-QR pass with the Gram matrix formed and factored in float64 whatever T is:
// X ← X·R⁻¹ with RᵀR = XᵀX. In float64 the pass stays accurate up to cond(X) ~ 1e7, which
// covers the sketches of decaying spectra that defeat a float32 Gram matrix. False (X
// untouched) when X is more ill-conditioned than that, or rank-deficient.
template <typename T>
bool CholeskyQrPassF64(const LapackTable& table, int64_t rows, int64_t cols, T* x, double* r,
                       SubspaceScratch<T>& sc) {
  const Lapack<double>& la = table.f64;
  double* xd;
  if constexpr (std::is_same_v<T, double>) {
    xd = x;
  } else {
    sc.xd.resize(rows * cols);
    std::copy(x, x + rows * cols, sc.xd.begin());
    xd = sc.xd.data();
  }
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
  blas::SyrkUpperT<double>(la, rows, cols, 1.0, xd, rows, 0.0, r, cols);
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
  blas::TrsmRightUpper<double>(la, rows, cols, r, cols, xd, rows);
  // X D⁻¹ = Q R'  =>  X = Q (R' D).
  for (int64_t j = 0; j < cols; ++j) {
    for (int64_t i = 0; i <= j; ++i) r[i + j * cols] *= sc.colscale[j];
  }
  if constexpr (!std::is_same_v<T, double>) {
    for (int64_t i = 0; i < rows * cols; ++i) x[i] = static_cast<T>(xd[i]);
  }
  return true;
}

// Orthonormalises X (rows x cols) in place; if r is given, X_in = X_out·R with R upper.
// CholeskyQR2 (first pass in float64, second in T), Householder QR when X is too
// ill-conditioned for it (e.g. the sketch of an exactly rank-deficient matrix).
template <typename T>
Status Orthonormalize(const LapackTable& table, int64_t rows, int64_t cols, T* x, T* r,
                      SubspaceScratch<T>& sc) {
  const Lapack<T>& la = table.Get<T>();
  sc.rd.resize(cols * cols);
  if (CholeskyQrPassF64(table, rows, cols, x, sc.rd.data(), sc)) {
    sc.g.resize(cols * cols);
    bool second = CholeskyQrPass(la, rows, cols, x, sc.g.data());
    if (!second) {
      // Rare: the first pass left X too ill-conditioned; finish with Householder.
      Status st = HouseholderQr(la, rows, cols, x, sc.g.data(), sc);
      if (!st.ok) return st;
    }
    if (r != nullptr) TriangularProduct(cols, sc.g.data(), sc.rd.data(), r);
    return Status::Ok();
  }
  return HouseholderQr(la, rows, cols, x, r, sc);
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

template <typename T>
bool AllFinite(const T* x, int64_t count) {
  for (int64_t i = 0; i < count; ++i) {
    if (!std::isfinite(x[i])) return false;
  }
  return true;
}

}  // namespace

template <typename T>
Status SubspaceSvd(const LapackTable& table, int64_t m, int64_t n, int64_t k, const T* a,
                   const T* init, int64_t init_cols, T* u, T* s, T* vt, SubspaceScratch<T>& sc,
                   const SubspaceOptions& opt, SubspaceResult* result) {
  const Lapack<T>& la = table.Get<T>();
  const int64_t b = opt.block;
  sc.q.resize(m * b);
  sc.w.resize(n * b);
  sc.y.resize(n * b);
  sc.r.resize(b * b);
  sc.us.resize(b * b);
  sc.vst.resize(b * b);
  sc.sig.resize(b);
  sc.ucol.resize(m * k);
  sc.res.resize(n * k);
  sc.iwork.resize(8 * b);
  *result = SubspaceResult{};

  // ---- Start: Q = orth([init | A Ω]).
  int64_t seeded = 0;
  if (init != nullptr && init_cols > 0 && AllFinite(init, m * init_cols)) {
    seeded = std::min(init_cols, b);
    for (int64_t q = 0; q < m; ++q) {
      for (int64_t j = 0; j < seeded; ++j) sc.q[q + j * m] = init[q * init_cols + j];
    }
  }
  if (seeded < b) {
    const int64_t fresh = b - seeded;
    FillRandom(sc.w.data(), n * fresh, opt.seed);  // Ω, n x fresh, in W's storage
    blas::Gemm<T>(la, 'T', 'N', m, fresh, n, T(1), a, n, sc.w.data(), n, T(0),
                  sc.q.data() + seeded * m, m);
  }
  Status st = Orthonormalize(table, m, b, sc.q.data(), static_cast<T*>(nullptr), sc);
  if (!st.ok) return st;

  // W = AᵀQ.
  blas::Gemm<T>(la, 'N', 'N', n, b, m, T(1), a, n, sc.q.data(), m, T(0), sc.w.data(), n);
  for (int64_t it = 1; it <= opt.max_iters; ++it) {
    result->iterations = it;
    // Right subspace Q_W = orth(W); Y = A Q_W = Q_Y R_Y.
    st = Orthonormalize(table, n, b, sc.w.data(), static_cast<T*>(nullptr), sc);
    if (!st.ok) return st;
    blas::Gemm<T>(la, 'T', 'N', m, b, n, T(1), a, n, sc.w.data(), n, T(0), sc.q.data(), m);
    st = Orthonormalize(table, m, b, sc.q.data(), sc.r.data(), sc);
    if (!st.ok) return st;
    // Rayleigh–Ritz: R_Y = X Σ Zᵀ, so A Q_W = (Q_Y X) Σ Zᵀ: U = Q_Y X_k, V = Q_W Z_k.
    if (!SmallSvd(la, b, sc)) return Status::Ok();  // let the caller take the dense path
    blas::Gemm<T>(la, 'N', 'N', m, k, b, T(1), sc.q.data(), m, sc.us.data(), b, T(0),
                  sc.ucol.data(), m);
    blas::Gemm<T>(la, 'N', 'T', n, k, b, T(1), sc.w.data(), n, sc.vst.data(), b, T(0), vt, n);
    // A V = U Σ holds by construction. The other residual, Aᵀ U − V Σ = (AᵀQ_Y) X_k − V Σ,
    // needs AᵀQ_Y: the next iteration's W, computed here once for both uses.
    blas::Gemm<T>(la, 'N', 'N', n, b, m, T(1), a, n, sc.q.data(), m, T(0), sc.y.data(), n);
    for (int64_t j = 0; j < k; ++j) {
      for (int64_t p = 0; p < n; ++p) sc.res[p + j * n] = vt[p + j * n] * sc.sig[j];
    }
    blas::Gemm<T>(la, 'N', 'N', n, k, b, T(1), sc.y.data(), n, sc.us.data(), b, T(-1),
                  sc.res.data(), n);
    // In units of σ_1, so that squares neither underflow nor overflow at extreme scales.
    const double unit = sc.sig[0] > 0 ? 1.0 / double(sc.sig[0]) : 1.0;
    double worst = 0;
    for (int64_t j = 0; j < k; ++j) {
      double acc = 0;
      for (int64_t p = 0; p < n; ++p) {
        const double e = double(sc.res[p + j * n]) * unit;
        acc += e * e;
      }
      worst = std::max(worst, std::sqrt(acc));
    }
    if (worst <= (sc.sig[0] > 0 ? opt.tol : 0.0)) {
      result->converged = true;
      break;
    }
    if (!std::isfinite(worst)) return Status::Ok();
    std::swap(sc.w, sc.y);
  }
  if (!result->converged) return Status::Ok();
  std::memcpy(s, sc.sig.data(), sizeof(T) * k);
  for (int64_t q = 0; q < m; ++q) {
    for (int64_t j = 0; j < k; ++j) u[q * k + j] = sc.ucol[q + j * m];
  }
  return Status::Ok();
}

template Status SubspaceSvd<float>(const LapackTable&, int64_t, int64_t, int64_t, const float*,
                                   const float*, int64_t, float*, float*, float*,
                                   SubspaceScratch<float>&, const SubspaceOptions&,
                                   SubspaceResult*);
template Status SubspaceSvd<double>(const LapackTable&, int64_t, int64_t, int64_t,
                                    const double*, const double*, int64_t, double*, double*,
                                    double*, SubspaceScratch<double>&, const SubspaceOptions&,
                                    SubspaceResult*);

}  // namespace rrae_fast::cpu
