// Typed wrappers over the cuBLAS/cuSOLVER routines the CUDA kernels use (float and double).
// All matrices here are column-major device arrays, as in csrc/cpu/blas.h for the CPU.
#ifndef RRAE_FAST_CUDA_SOLVER_H_
#define RRAE_FAST_CUDA_SOLVER_H_

#include <cublas_v2.h>
#include <cusolverDn.h>

#include <cstdint>

namespace rrae_fast::cuda::solver {

inline cublasOperation_t Op(char t) { return t == 'T' ? CUBLAS_OP_T : CUBLAS_OP_N; }

// C = alpha·op(A)·op(B) + beta·C, C m x n.
inline cublasStatus_t Gemm(cublasHandle_t h, char ta, char tb, int64_t m, int64_t n, int64_t k,
                           float alpha, const float* a, int64_t lda, const float* b, int64_t ldb,
                           float beta, float* c, int64_t ldc) {
  return cublasSgemm(h, Op(ta), Op(tb), int(m), int(n), int(k), &alpha, a, int(lda), b, int(ldb),
                     &beta, c, int(ldc));
}
inline cublasStatus_t Gemm(cublasHandle_t h, char ta, char tb, int64_t m, int64_t n, int64_t k,
                           double alpha, const double* a, int64_t lda, const double* b,
                           int64_t ldb, double beta, double* c, int64_t ldc) {
  return cublasDgemm(h, Op(ta), Op(tb), int(m), int(n), int(k), &alpha, a, int(lda), b, int(ldb),
                     &beta, c, int(ldc));
}

// C = op(A), C m x n: a copy (ta = 'N') or a transpose (ta = 'T') between strided matrices.
inline cublasStatus_t Copy(cublasHandle_t h, char ta, int64_t m, int64_t n, const float* a,
                           int64_t lda, float* c, int64_t ldc) {
  const float one = 1, zero = 0;
  return cublasSgeam(h, Op(ta), CUBLAS_OP_N, int(m), int(n), &one, a, int(lda), &zero, c, int(ldc),
                     c, int(ldc));
}
inline cublasStatus_t Copy(cublasHandle_t h, char ta, int64_t m, int64_t n, const double* a,
                           int64_t lda, double* c, int64_t ldc) {
  const double one = 1, zero = 0;
  return cublasDgeam(h, Op(ta), CUBLAS_OP_N, int(m), int(n), &one, a, int(lda), &zero, c, int(ldc),
                     c, int(ldc));
}

// Householder QR (geqrf) and the explicit Q (orgqr), rows >= cols.
inline cusolverStatus_t GeqrfBufferSize(cusolverDnHandle_t h, int64_t m, int64_t n, float* a,
                                        int* lwork) {
  return cusolverDnSgeqrf_bufferSize(h, int(m), int(n), a, int(m), lwork);
}
inline cusolverStatus_t GeqrfBufferSize(cusolverDnHandle_t h, int64_t m, int64_t n, double* a,
                                        int* lwork) {
  return cusolverDnDgeqrf_bufferSize(h, int(m), int(n), a, int(m), lwork);
}
inline cusolverStatus_t Geqrf(cusolverDnHandle_t h, int64_t m, int64_t n, float* a, float* tau,
                              float* work, int lwork, int* info) {
  return cusolverDnSgeqrf(h, int(m), int(n), a, int(m), tau, work, lwork, info);
}
inline cusolverStatus_t Geqrf(cusolverDnHandle_t h, int64_t m, int64_t n, double* a, double* tau,
                              double* work, int lwork, int* info) {
  return cusolverDnDgeqrf(h, int(m), int(n), a, int(m), tau, work, lwork, info);
}
inline cusolverStatus_t OrgqrBufferSize(cusolverDnHandle_t h, int64_t m, int64_t n, const float* a,
                                        const float* tau, int* lwork) {
  return cusolverDnSorgqr_bufferSize(h, int(m), int(n), int(n), a, int(m), tau, lwork);
}
inline cusolverStatus_t OrgqrBufferSize(cusolverDnHandle_t h, int64_t m, int64_t n,
                                        const double* a, const double* tau, int* lwork) {
  return cusolverDnDorgqr_bufferSize(h, int(m), int(n), int(n), a, int(m), tau, lwork);
}
inline cusolverStatus_t Orgqr(cusolverDnHandle_t h, int64_t m, int64_t n, float* a,
                              const float* tau, float* work, int lwork, int* info) {
  return cusolverDnSorgqr(h, int(m), int(n), int(n), a, int(m), tau, work, lwork, info);
}
inline cusolverStatus_t Orgqr(cusolverDnHandle_t h, int64_t m, int64_t n, double* a,
                              const double* tau, double* work, int lwork, int* info) {
  return cusolverDnDorgqr(h, int(m), int(n), int(n), a, int(m), tau, work, lwork, info);
}

// Thin SVD A = U·diag(S)·VT of an m x n matrix, m >= n (cuSOLVER's gesvd needs it), A
// destroyed; U m x n (ld m), VT n x n (ld n). `info` (device) > 0: not converged.
inline cusolverStatus_t GesvdBufferSize(cusolverDnHandle_t h, int64_t m, int64_t n, float*,
                                        int* lwork) {
  return cusolverDnSgesvd_bufferSize(h, int(m), int(n), lwork);
}
inline cusolverStatus_t GesvdBufferSize(cusolverDnHandle_t h, int64_t m, int64_t n, double*,
                                        int* lwork) {
  return cusolverDnDgesvd_bufferSize(h, int(m), int(n), lwork);
}
inline cusolverStatus_t Gesvd(cusolverDnHandle_t h, int64_t m, int64_t n, float* a, float* s,
                              float* u, float* vt, float* work, int lwork, float* rwork,
                              int* info) {
  return cusolverDnSgesvd(h, 'S', 'S', int(m), int(n), a, int(m), s, u, int(m), vt, int(n), work,
                          lwork, rwork, info);
}
inline cusolverStatus_t Gesvd(cusolverDnHandle_t h, int64_t m, int64_t n, double* a, double* s,
                              double* u, double* vt, double* work, int lwork, double* rwork,
                              int* info) {
  return cusolverDnDgesvd(h, 'S', 'S', int(m), int(n), a, int(m), s, u, int(m), vt, int(n), work,
                          lwork, rwork, info);
}

}  // namespace rrae_fast::cuda::solver

#endif  // RRAE_FAST_CUDA_SOLVER_H_
