// Iterative path: randomized subspace iteration for the top k triplets of one matrix.
#ifndef RRAE_FAST_CPU_SUBSPACE_SVD_H_
#define RRAE_FAST_CPU_SUBSPACE_SVD_H_

#include <cstdint>
#include <vector>

#include "common/status.h"
#include "common/vector_bytes.h"
#include "cpu/blas.h"
#include "cpu/lapack.h"

namespace rrae_fast::cpu {

struct SubspaceOptions {
  int64_t block = 0;       // subspace width b, k <= b <= min(m, n)
  int64_t max_iters = 0;   // iterations (two products with A each) before giving up
  double tol = 0;          // converged when every ‖Aᵀ u_i − σ_i v_i‖ <= tol · σ_1
  uint64_t seed = 0;       // random start
  blas::RowSplit threads;  // threads for the products with A (one matrix on the whole pool)
};

template <typename T>
struct SubspaceScratch {
  std::vector<T> block, prod, next;  // max(m, n) x b column-major blocks: B, P, P'
  std::vector<T> bz, qx;             // Ritz vectors: B Z_k (max(m, n) x k), Q_P X (max(m, n) x b)
  std::vector<T> r, g;               // b x b: triangular factors, Gram matrices
  std::vector<double> rd, xd;        // float64 Gram/factor (b x b) and a float64 copy of a block
  std::vector<double> colscale;      // column scaling of a block before its Gram matrix; a
                                     // column of a triangular product
  std::vector<T> us, vst, sig;       // small SVD of R: X (b x b), Zᵀ (b x b), Σ (b); or
                                     // M = Z Σ⁻¹, Zᵀ, Σ from PᵀP = Z Σ² Zᵀ (GramRitz)
  std::vector<double> lambda, eig_work;  // eigenvalues of PᵀP; LAPACK float64 scratch
  std::vector<T> tau, work;              // LAPACK scratch
  std::vector<float> pack;               // packed block of a narrow product (float32 only)
  std::vector<T> partial;                // per-thread Gram matrices of a split product
  std::vector<double> partial_d;
  std::vector<float> rf;  // a float64 triangular factor rounded to float32
  std::vector<lapack_int> iwork;
  // Set by each orthonormalisation: whether rd and g hold its two CholeskyQR factors, R1
  // (float64) and R2, with X_in = X_out·R2·R1.
  bool two_factors = false;
  // Set by each orthonormalisation: whether its float64 pass alone did it (float32 blocks whose
  // factor R1 is well conditioned), R1 in rd, with X_in = X_out·R1.
  bool one_factor = false;

  std::size_t Bytes() const {
    return VectorBytes(block, prod, next, bz, qx, r, g, rd, xd, colscale, us, vst, sig, lambda,
                       eig_work, tau, work, pack, partial, partial_d, rf, iwork);
  }
};

struct SubspaceResult {
  bool converged = false;
  // A has a NaN or an infinity, or the first product with it overflowed: nothing else was
  // done, and the caller tells the two apart. The first product (the random sketch A·Ω, or
  // AᵀB where init fills the block) reaches every entry of A; see the start of SubspaceSvd.
  bool not_finite = false;
  int64_t passes = 0;  // GEMM sweeps over A (products with A or Aᵀ, the random sketch included)
};

// Top-k triplets of the row-major m x n matrix `a` into u (m x k, row stride ldu >= k),
// s (k) and vt (k x n row-major), unsigned. `init` (row-major m x init_cols, may be null) seeds
// the first columns of the subspace; non-finite or degenerate seeds are tolerated. Not converging
// is not an error: `result.converged` is false and the caller falls back to the dense path.
// `a` need not be checked for NaN/Inf beforehand: see SubspaceResult::not_finite.
template <typename T>
Status SubspaceSvd(const LapackTable& table, int64_t m, int64_t n, int64_t k, int64_t ldu,
                   const T* a, const T* init, int64_t init_cols, T* u, T* s, T* vt,
                   SubspaceScratch<T>& sc, const SubspaceOptions& opt, SubspaceResult* result);

}  // namespace rrae_fast::cpu

#endif  // RRAE_FAST_CPU_SUBSPACE_SVD_H_
