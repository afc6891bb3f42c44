// Eigenvalues and eigenvectors of a symmetric tridiagonal matrix: stages 3 and 4 of the Gram
// path (gram_svd.h), for the tridiagonal matrix of tridiagonal.h.
#ifndef RRAE_FAST_CPU_TRIDIAGONAL_EIGEN_H_
#define RRAE_FAST_CPU_TRIDIAGONAL_EIGEN_H_

#include <cstdint>

#include "common/export.h"

namespace rrae_fast::cpu {

// The k largest eigenvalues of the symmetric tridiagonal matrix T with diagonal d and couplings
// e (e[i] joins i and i + 1; p entries each, e[p − 1] unused) into lam, descending, to an
// absolute accuracy of a few ε·‖T‖: by multisection on Sturm counts (`bisection`), or all p of
// them by the root-free implicit QL iteration and then the k largest. False if QL does not
// converge. work: 2p + 5k doubles. GramSvd takes the multisection (with its Newton passes)
// where UseBisection(p, k), 4k <= 3p: its cost grows with k, QL's (~p² rotation steps) does
// not (the measured crossover is in benchmarks/RESULTS.md, "Multisection against QL").
bool UseBisection(int64_t p, int64_t k);
RRAE_FAST_CORE_API bool TridiagonalTopEigenvalues(int64_t p, int64_t k, const double* d,
                                                  const double* e, bool bisection, double* lam,
                                                  double* work);

// The eigenvectors of T (d, e as above, entries of magnitude at most ~1) for its k largest
// eigenvalues lam[0..k) (descending) into the rows of x (k x p), and the largest residual
// ‖T x_j − λ_j x_j‖_∞ in *worst. False if one of them does not reach its residual tolerance
// (1e3·p·ε·‖T‖). work: TopEigenvectorsWork(p) doubles.
bool TopEigenvectors(int64_t p, int64_t k, const double* d, const double* e, const double* lam,
                     double* x, double* worst, double* work);
int64_t TopEigenvectorsWork(int64_t p);

}  // namespace rrae_fast::cpu

#endif  // RRAE_FAST_CPU_TRIDIAGONAL_EIGEN_H_
