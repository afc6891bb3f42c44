// Iterative path on the GPU: the algorithm of csrc/cpu/subspace_svd.cc with a fixed schedule.
//
// The row-major m x n input is the column-major n x m matrix Aᵀ, so A·X and Aᵀ·X are plain
// cuBLAS GEMMs on the input as it lies in memory. With Y (m x b) and P (n x b):
//
//   Y = orth([init | A Ω])                  start (Ω pseudo-random)
//   repeat power_iters times:  P = orth(Aᵀ Y),  Y = orth(A P)
//   Aᵀ Y = Q_P R,  R = X Σ Zᵀ                 Rayleigh–Ritz: U = Y Z, V = Q_P X
//   residual  A V_k − U_k Σ_k                 (Aᵀ U − V Σ vanishes by construction)
//
// The CPU kernel repeats passes until its residual test passes; here the host cannot read the
// test without synchronising, so the schedule is fixed and the test only marks the member
// (kFlagUnconverged). The op then recomputes marked members on the dense path (see
// rrae_fast/_forward.py), so a result that misses the contract never reaches the user.
// orth() is Householder QR (geqrf + orgqr): no breakdown on rank-deficient blocks. Where the
// CPU kernel's float32 tests take Z and Σ from the eigenvectors of (AᵀY)ᵀ(AᵀY) in float64
// (on two cores dsyevd costs less than the QR and sgesdd it replaces), Rayleigh–Ritz here keeps
// the QR of the product and the SVD of R: unmeasured on the GPU, so left as it was.
#include <algorithm>

#include "cuda/check.h"
#include "cuda/kernels.h"
#include "cuda/solver.h"
#include "cuda/subspace_svd.h"

namespace rrae_fast::cuda {

namespace {

// X (rows x b, ld rows) ← Q of its QR factorisation; r (b x b) ← R when asked.
template <typename T>
Status Orthonormalize(const Context& ctx, int64_t rows, int64_t b, T* x, T* r,
                      const SubspaceWork<T>& w) {
  cusolverDnHandle_t sol = ctx.handles.solver;
  RRAE_FAST_CUDA_TRY(solver::Geqrf(sol, rows, b, x, w.tau, w.work, w.lwork, w.qr_info));
  if (r != nullptr) LaunchCopyUpper(ctx.stream, b, x, rows, r);
  RRAE_FAST_CUDA_TRY(solver::Orgqr(sol, rows, b, x, w.tau, w.work, w.lwork, w.qr_info));
  return Status::Ok();
}

}  // namespace

template <typename T>
Status CarveSubspace(const Context& ctx, int64_t m, int64_t n, int64_t kw, int64_t b,
                     Carver& carver, SubspaceWork<T>* work) {
  cusolverDnHandle_t sol = ctx.handles.solver;
  int lwork = 0;
  for (int64_t rows : {m, n}) {
    int size = 0;
    RRAE_FAST_CUDA_TRY(solver::GeqrfBufferSize(sol, rows, b, static_cast<T*>(nullptr), &size));
    lwork = std::max(lwork, size);
    RRAE_FAST_CUDA_TRY(solver::OrgqrBufferSize(sol, rows, b, static_cast<const T*>(nullptr),
                                               static_cast<const T*>(nullptr), &size));
    lwork = std::max(lwork, size);
  }
  int size = 0;
  RRAE_FAST_CUDA_TRY(solver::GesvdBufferSize(sol, b, b, static_cast<T*>(nullptr), &size));
  work->lwork = std::max(lwork, size);
  work->y = carver.Take<T>(m * b);
  work->p = carver.Take<T>(n * b);
  work->tau = carver.Take<T>(b);
  work->r = carver.Take<T>(b * b);
  work->x = carver.Take<T>(b * b);
  work->zt = carver.Take<T>(b * b);
  work->sig = carver.Take<T>(b);
  work->uk = carver.Take<T>(m * kw);
  work->vk = carver.Take<T>(n * kw);
  work->av = carver.Take<T>(m * kw);
  work->rwork = carver.Take<T>(b);
  work->work = carver.Take<T>(work->lwork);
  work->qr_info = carver.Take<int>(1);
  return Status::Ok();
}

template <typename T>
Status SubspaceSvd(const Context& ctx, int64_t m, int64_t n, int64_t kw, const T* a, const T* init,
                   int64_t init_cols, const int32_t* k, T* u, T* s, T* vt, int32_t* flag,
                   int* small_info, const SubspaceWork<T>& w, const SubspaceOptions& opt) {
  cublasHandle_t blas = ctx.handles.blas;
  const int64_t b = opt.block;
  // A·X = (Aᵀ)ᵀ·X and Aᵀ·X with Aᵀ the column-major n x m input.
  // A non-finite member's products are zeroed before anything factors them (its outputs are
  // NaN in the epilogue).
  auto times_a = [&](int64_t cols, const T* x, T* out) {  // out (m x cols) = A x (x: n x cols)
    const cublasStatus_t st =
        solver::Gemm(blas, 'T', 'N', m, cols, n, T(1), a, n, x, n, T(0), out, m);
    LaunchZeroIfFlagged(ctx.stream, flag, kFlagNonFinite, out, m * cols);
    return st;
  };
  auto times_at = [&](int64_t cols, const T* x, T* out) {  // out (n x cols) = Aᵀ x (x: m x cols)
    const cublasStatus_t st =
        solver::Gemm(blas, 'N', 'N', n, cols, m, T(1), a, n, x, m, T(0), out, n);
    LaunchZeroIfFlagged(ctx.stream, flag, kFlagNonFinite, out, n * cols);
    return st;
  };

  // ---- Start: Y = orth([init | A Ω]).
  const int64_t seeded = init != nullptr ? std::min(init_cols, b) : 0;
  if (seeded < b) {
    LaunchFillRandom(ctx.stream, w.p, n * (b - seeded), opt.seed);
    RRAE_FAST_CUDA_TRY(times_a(b - seeded, w.p, w.y + seeded * m));
  }
  if (seeded > 0) {
    // init is row-major m x init_cols: its first `seeded` columns, transposed into Y.
    RRAE_FAST_CUDA_TRY(solver::Copy(blas, 'T', m, seeded, init, init_cols, w.y, m));
    LaunchSanitizeColumns(ctx.stream, m, seeded, w.y, m, opt.seed + 7);
  }
  RRAE_FAST_RETURN_IF_ERROR(Orthonormalize<T>(ctx, m, b, w.y, nullptr, w));

  // ---- Power iterations.
  for (int64_t it = 0; it < opt.power_iters; ++it) {
    RRAE_FAST_CUDA_TRY(times_at(b, w.y, w.p));
    RRAE_FAST_RETURN_IF_ERROR(Orthonormalize<T>(ctx, n, b, w.p, nullptr, w));
    RRAE_FAST_CUDA_TRY(times_a(b, w.p, w.y));
    RRAE_FAST_RETURN_IF_ERROR(Orthonormalize<T>(ctx, m, b, w.y, nullptr, w));
  }

  // ---- Rayleigh–Ritz: Aᵀ Y = Q_P R, R = X Σ Zᵀ.
  RRAE_FAST_CUDA_TRY(times_at(b, w.y, w.p));
  RRAE_FAST_RETURN_IF_ERROR(Orthonormalize<T>(ctx, n, b, w.p, w.r, w));
  RRAE_FAST_CUDA_TRY(solver::Gesvd(ctx.handles.solver, b, b, w.r, w.sig, w.x, w.zt, w.work,
                                   w.lwork, w.rwork, small_info));
  // U_k = Y Z_k (Z_k = first kw rows of Zᵀ, transposed); V_k = Q_P X_k.
  RRAE_FAST_CUDA_TRY(solver::Gemm(blas, 'N', 'T', m, kw, b, T(1), w.y, m, w.zt, b, T(0), w.uk, m));
  RRAE_FAST_CUDA_TRY(solver::Gemm(blas, 'N', 'N', n, kw, b, T(1), w.p, n, w.x, b, T(0), w.vk, n));

  // ---- Residual test on the device.
  RRAE_FAST_CUDA_TRY(times_a(kw, w.vk, w.av));
  LaunchResidualTest(ctx.stream, m, kw, w.av, w.uk, w.sig, k, opt.tol, flag);

  // ---- Outputs: u row-major (m x kw) = U_kᵀ column-major; vt row-major (kw x n) = V_k.
  RRAE_FAST_CUDA_TRY(solver::Copy(blas, 'T', kw, m, w.uk, m, u, kw));
  RRAE_FAST_CUDA_TRY(
      cudaMemcpyAsync(vt, w.vk, sizeof(T) * kw * n, cudaMemcpyDeviceToDevice, ctx.stream));
  RRAE_FAST_CUDA_TRY(
      cudaMemcpyAsync(s, w.sig, sizeof(T) * kw, cudaMemcpyDeviceToDevice, ctx.stream));
  return Status::Ok();
}

template Status CarveSubspace<float>(const Context&, int64_t, int64_t, int64_t, int64_t, Carver&,
                                     SubspaceWork<float>*);
template Status CarveSubspace<double>(const Context&, int64_t, int64_t, int64_t, int64_t, Carver&,
                                      SubspaceWork<double>*);
template Status SubspaceSvd<float>(const Context&, int64_t, int64_t, int64_t, const float*,
                                   const float*, int64_t, const int32_t*, float*, float*, float*,
                                   int32_t*, int*, const SubspaceWork<float>&,
                                   const SubspaceOptions&);
template Status SubspaceSvd<double>(const Context&, int64_t, int64_t, int64_t, const double*,
                                    const double*, int64_t, const int32_t*, double*, double*,
                                    double*, int32_t*, int*, const SubspaceWork<double>&,
                                    const SubspaceOptions&);

}  // namespace rrae_fast::cuda
