// Iterative path: randomized subspace iteration for the top triplets of one matrix, with a fixed
// schedule and the convergence test decided on the device.
#ifndef RRAE_FAST_CUDA_SUBSPACE_SVD_H_
#define RRAE_FAST_CUDA_SUBSPACE_SVD_H_

#include <cstdint>

#include "common/status.h"
#include "cuda/context.h"
#include "cuda/workspace.h"

namespace rrae_fast::cuda {

struct SubspaceOptions {
  int64_t block = 0;        // subspace width b, kw <= b <= min(m, n)
  int64_t power_iters = 1;  // products A·(Aᵀ·) between the sketch and the Rayleigh–Ritz step
  double tol = 0;           // converged when every ‖A v_i − σ_i u_i‖ <= tol · σ_1 (i < k)
  uint64_t seed = 0;        // random start
};

// Products with A (or Aᵀ) of the schedule: sketch, 2 per power iteration, the Rayleigh–Ritz
// product and the test product (width kw).
inline int64_t SubspacePasses(const SubspaceOptions& opt) { return 3 + 2 * opt.power_iters; }

template <typename T>
struct SubspaceWork {
  T* y = nullptr;    // m x b: the left block
  T* p = nullptr;    // n x b: the right block
  T* tau = nullptr;  // b
  T* r = nullptr;    // b x b: triangular factor, destroyed by the small SVD
  T* x = nullptr;    // b x b: left singular vectors of R
  T* zt = nullptr;   // b x b: right singular vectors of R, transposed
  T* sig = nullptr;  // b
  T* uk = nullptr;   // m x kw: Ritz vectors
  T* vk = nullptr;   // n x kw
  T* av = nullptr;   // m x kw: A·vk for the residual test
  T* rwork = nullptr;
  T* work = nullptr;
  int lwork = 0;
  int* qr_info = nullptr;  // geqrf/orgqr info (argument errors only)
};

template <typename T>
Status CarveSubspace(const Context& ctx, int64_t m, int64_t n, int64_t kw, int64_t b,
                     Carver& carver, SubspaceWork<T>* work);

// Top-kw Ritz triplets of the row-major m x n matrix `a` into u (row-major m x kw), s (kw) and
// vt (row-major kw x n), unsigned. `init` (row-major m x init_cols, may be null) seeds the first
// columns of the start; non-finite seed columns are replaced by random ones. `k` (device) is
// this member's rank; `flag` (device) gets kFlagUnconverged when a residual of the first k
// triplets exceeds the tolerance or the small SVD fails. Enqueued; no synchronisation.
template <typename T>
Status SubspaceSvd(const Context& ctx, int64_t m, int64_t n, int64_t kw, const T* a, const T* init,
                   int64_t init_cols, const int32_t* k, T* u, T* s, T* vt, int32_t* flag,
                   int* small_info, const SubspaceWork<T>& work, const SubspaceOptions& opt);

}  // namespace rrae_fast::cuda

#endif  // RRAE_FAST_CUDA_SUBSPACE_SVD_H_
