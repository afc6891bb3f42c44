// Gram path: the top-k SVD of a small float32 matrix from the float64 Gram matrix of its
// smaller side and a symmetric tridiagonal eigensolver, all in cache.
#ifndef RRAE_FAST_CPU_GRAM_SVD_H_
#define RRAE_FAST_CPU_GRAM_SVD_H_

#include <cstdint>
#include <vector>

#include "common/vector_bytes.h"
#include "cpu/lapack.h"

namespace rrae_fast::cpu {

// Largest min(m, n) the automatic method sends to the Gram path (float32 only); the choice
// below it is PreferGram's (truncated_svd.cc), measured against LAPACK's sgesdd.
inline constexpr int64_t kGramMaxSide = 256;

struct GramScratch {
  std::vector<double> rows;  // a block of rows of Y (see gram_svd.cc) in float64, + 8
  std::vector<double> g;     // p x p: the Gram matrix, then the Householder vectors
  std::vector<double> d, e;  // the tridiagonal matrix T: diagonal and off-diagonal (p)
  std::vector<double> tau;   // the Householder scalars (p)
  std::vector<double> lam;   // the top-k eigenvalues of T, descending (k)
  std::vector<double> eig;   // the eigenvalue solvers' workspace (2p + 5k)
  std::vector<double> lu;    // LU factors of T - σI for 8 shifts, and 8 vectors (6 x 8p)
  std::vector<double> x;     // k x p: eigenvectors of T (rows)
  std::vector<double> xx;    // k x k: their inner products
  std::vector<double> ev;    // p x k: eigenvectors of the Gram matrix (columns)
  std::vector<double> wt;    // k x q: Y times those (rows), then orthonormal
  std::vector<double> copy;  // k x q: a copy of some of those rows
  std::vector<double> work;  // max(2p, q): two vectors of p, a column of W, or k scalars

  std::size_t Bytes() const {
    return VectorBytes(rows, g, d, e, tau, lam, eig, lu, x, xx, ev, wt, copy, work);
  }
};

// The k largest eigenvalues of the symmetric tridiagonal matrix T with diagonal d and couplings
// e (e[i] joins i and i + 1; p entries each, e[p − 1] unused) into lam, descending, to an
// absolute accuracy of a few ε·‖T‖: by multisection on Sturm counts (`bisection`), or all p of
// them by the root-free implicit QL iteration and then the k largest. False if QL does not
// converge. work: 2p + 5k doubles. GramSvd takes the multisection (with its Newton passes)
// where UseBisection(p, k), 4k <= 3p: its cost grows with k, QL's (~p² rotation steps) does
// not (the measured crossover is in benchmarks/RESULTS.md, "Multisection against QL").
bool UseBisection(int64_t p, int64_t k);
bool TridiagonalTopEigenvalues(int64_t p, int64_t k, const double* d, const double* e,
                               bool bisection, double* lam, double* work);

// Top-k triplets of the finite row-major float32 m x n matrix `a` into u (m x k, row stride
// ldu >= k), s (k) and vt (k x n row-major), unsigned. The eigensolver checks its own result
// (eigen-residuals and orthogonality in float64); false means a check failed, nothing was
// written that the caller may use, and the caller takes the dense path instead.
//
// Accuracy: the Gram matrix squares the spread of the singular values, which float64 absorbs
// for float32 data (σ_i and the residuals to ~sqrt(p·ε64)·σ_1 ≈ 1e-7·σ_1 at worst, against the
// contract's 20·√max(m, n)·ε32·σ_1); it would not for float64 data, which never comes here.
bool GramSvd(const Lapack<double>& la, int64_t m, int64_t n, int64_t k, int64_t ldu,
             const float* a, float* u, float* s, float* vt, GramScratch& sc);

// Pieces of the path that the shifted Gram solves (shifted_gram_solve.h) use as well.
//
// sc.g (p x p, row-major) = Yᵀ Y in float64 for the row-major m x n matrix a, with Y = a
// (m >= n) or aᵀ, p = min(m, n); sc.rows and sc.g are sized here.
template <typename T>
void GramOfShortSide(const Lapack<double>& la, const T* a, int64_t m, int64_t n, GramScratch& sc);
// Householder reduction of the symmetric p x p matrix g (held in full, entries of magnitude at
// most ~1) to the tridiagonal T = Qᵀ G Q with diagonal d and couplings e (e[p − 1] = 0); the
// reflectors that make Q stay in g, their scalars in tau (p). w: 2p scratch.
void ReduceToTridiagonal(int64_t p, double* g, double* d, double* e, double* tau, double* w);
// The rows of x (count x p) <- Q times them, or Qᵀ times them where `transposed`, for the Q
// that ReduceToTridiagonal left in (g, tau).
void ApplyReflectors(int64_t p, int64_t count, const double* g, const double* tau, bool transposed,
                     double* x);

}  // namespace rrae_fast::cpu

#endif  // RRAE_FAST_CPU_GRAM_SVD_H_
