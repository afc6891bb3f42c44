// Typed, value-argument wrappers over the Fortran BLAS/LAPACK pointers of lapack.h.
// All matrices here are column-major.
#ifndef RRAE_FAST_CPU_BLAS_H_
#define RRAE_FAST_CPU_BLAS_H_

#include <cstdint>

#include "cpu/lapack.h"

namespace rrae_fast::cpu::blas {

template <typename T>
void Gemm(const Lapack<T>& la, char ta, char tb, int64_t m, int64_t n, int64_t k, T alpha,
          const T* a, int64_t lda, const T* b, int64_t ldb, T beta, T* c, int64_t ldc) {
  lapack_int M = m, N = n, K = k, LDA = lda, LDB = ldb, LDC = ldc;
  la.gemm(&ta, &tb, &M, &N, &K, &alpha, const_cast<T*>(a), &LDA, const_cast<T*>(b), &LDB, &beta, c,
          &LDC);
}

// Upper triangle of C = alpha·AᵀA + beta·C, A rows x cols.
template <typename T>
void SyrkUpperT(const Lapack<T>& la, int64_t rows, int64_t cols, T alpha, const T* a, int64_t lda,
                T beta, T* c, int64_t ldc) {
  char uplo = 'U', trans = 'T';
  lapack_int N = cols, K = rows, LDA = lda, LDC = ldc;
  la.syrk(&uplo, &trans, &N, &K, &alpha, const_cast<T*>(a), &LDA, &beta, c, &LDC);
}

// B ← B·R⁻¹ with R upper triangular (cols x cols), B rows x cols.
template <typename T>
void TrsmRightUpper(const Lapack<T>& la, int64_t rows, int64_t cols, const T* r, int64_t ldr, T* b,
                    int64_t ldb) {
  char side = 'R', uplo = 'U', trans = 'N', diag = 'N';
  lapack_int M = rows, N = cols, LDR = ldr, LDB = ldb;
  T one = 1;
  la.trsm(&side, &uplo, &trans, &diag, &M, &N, &one, const_cast<T*>(r), &LDR, b, &LDB);
}

// Cholesky factor (upper) in place; returns LAPACK's info.
template <typename T>
lapack_int PotrfUpper(const Lapack<T>& la, int64_t n, T* a, int64_t lda) {
  char uplo = 'U';
  lapack_int N = n, LDA = lda, info = 0;
  la.potrf(&uplo, &N, a, &LDA, &info);
  return info;
}

}  // namespace rrae_fast::cpu::blas

#endif  // RRAE_FAST_CPU_BLAS_H_
