// Dense path. The row-major m x n input is, as it lies in memory, the column-major n x m
// matrix Aᵀ. cuSOLVER's gesvd needs rows >= columns, so:
//   n >= m: factor Aᵀ = L Σ R (n x m, tall): A = Rᵀ Σ Lᵀ, i.e. U = Rᵀ, V = L;
//   n <  m: transpose to A (m x n, tall) and factor A = L Σ R: U = L, Vᵀ = R.
// The outputs are then gathered into the row-major u and vt with cuBLAS copies (geam).
#include <algorithm>

#include "cuda/check.h"
#include "cuda/dense_svd.h"
#include "cuda/kernels.h"
#include "cuda/solver.h"

namespace rrae_fast::cuda {

template <typename T>
Status CarveDense(const Context& ctx, int64_t m, int64_t n, Carver& carver, DenseWork<T>* work) {
  const int64_t r = std::min(m, n), big = std::max(m, n);
  RRAE_FAST_CUDA_TRY(
      solver::GesvdBufferSize(ctx.handles.solver, big, r, static_cast<T*>(nullptr), &work->lwork));
  work->w = carver.Take<T>(m * n);
  work->left = carver.Take<T>(big * r);
  work->right = carver.Take<T>(r * r);
  work->sig = carver.Take<T>(r);
  work->rwork = carver.Take<T>(r);
  work->work = carver.Take<T>(work->lwork);
  return Status::Ok();
}

template <typename T>
Status DenseSvd(const Context& ctx, int64_t m, int64_t n, int64_t kw, const T* a, T* u, T* s,
                T* vt, const int32_t* flag, int* dev_info, const DenseWork<T>& w) {
  cublasHandle_t blas = ctx.handles.blas;
  cusolverDnHandle_t sol = ctx.handles.solver;
  if (n >= m) {
    RRAE_FAST_CUDA_TRY(solver::Copy(blas, 'N', n, m, a, n, w.w, n));
    LaunchZeroIfFlagged(ctx.stream, flag, kFlagNonFinite, w.w, m * n);  // its outputs are NaN
    RRAE_FAST_CUDA_TRY(
        solver::Gesvd(sol, n, m, w.w, w.sig, w.left, w.right, w.work, w.lwork, w.rwork, dev_info));
    // u[q, j] = R[j, q]: the first kw rows of R (m x m, ld m), as a kw x m column-major block.
    RRAE_FAST_CUDA_TRY(solver::Copy(blas, 'N', kw, m, w.right, m, u, kw));
    // vt[j, :] = L[:, j]: L's first kw columns are vt's rows.
    RRAE_FAST_CUDA_TRY(
        cudaMemcpyAsync(vt, w.left, sizeof(T) * kw * n, cudaMemcpyDeviceToDevice, ctx.stream));
  } else {
    RRAE_FAST_CUDA_TRY(solver::Copy(blas, 'T', m, n, a, n, w.w, m));
    LaunchZeroIfFlagged(ctx.stream, flag, kFlagNonFinite, w.w, m * n);
    RRAE_FAST_CUDA_TRY(
        solver::Gesvd(sol, m, n, w.w, w.sig, w.left, w.right, w.work, w.lwork, w.rwork, dev_info));
    // u[q, j] = L[q, j] (L m x n, ld m); vt[j, p] = R[j, p] (R n x n, ld n).
    RRAE_FAST_CUDA_TRY(solver::Copy(blas, 'T', kw, m, w.left, m, u, kw));
    RRAE_FAST_CUDA_TRY(solver::Copy(blas, 'T', n, kw, w.right, n, vt, n));
  }
  RRAE_FAST_CUDA_TRY(
      cudaMemcpyAsync(s, w.sig, sizeof(T) * kw, cudaMemcpyDeviceToDevice, ctx.stream));
  return Status::Ok();
}

template Status CarveDense<float>(const Context&, int64_t, int64_t, Carver&, DenseWork<float>*);
template Status CarveDense<double>(const Context&, int64_t, int64_t, Carver&, DenseWork<double>*);
template Status DenseSvd<float>(const Context&, int64_t, int64_t, int64_t, const float*, float*,
                                float*, float*, const int32_t*, int*, const DenseWork<float>&);
template Status DenseSvd<double>(const Context&, int64_t, int64_t, int64_t, const double*, double*,
                                 double*, double*, const int32_t*, int*, const DenseWork<double>&);

}  // namespace rrae_fast::cuda
