// Gram path: the top-k SVD of a small float32 matrix from the float64 Gram matrix of its
// smaller side (gram_matrix.h) and a symmetric tridiagonal eigensolver (tridiagonal.h,
// tridiagonal_eigen.h), all in cache.
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
  std::vector<double> rows;  // a block of rows of Y (gram_matrix.h) in float64, + 8
  std::vector<double> g;     // p x p: the Gram matrix, then the Householder vectors
  std::vector<double> d, e;  // the tridiagonal matrix T: diagonal and off-diagonal (p)
  std::vector<double> tau;   // the Householder scalars (p)
  std::vector<double> lam;   // the top-k eigenvalues of T, descending (k)
  std::vector<double> eig;   // the eigenvalue solvers' workspace (2p + 5k)
  std::vector<double> lu;    // inverse iteration's workspace (TopEigenvectorsWork(p))
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

}  // namespace rrae_fast::cpu

#endif  // RRAE_FAST_CPU_GRAM_SVD_H_
