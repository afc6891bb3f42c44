// Batched driver on the GPU: path selection, workspace, the epilogue. Mirrors
// csrc/cpu/truncated_svd.cc.
#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "cuda/check.h"
#include "cuda/dense_svd.h"
#include "cuda/kernels.h"
#include "cuda/small_svd.h"
#include "cuda/subspace_svd.h"
#include "cuda/truncated_svd.h"

namespace rrae_fast::cuda {

Path ChoosePath(int64_t m, int64_t n, int64_t max_k, size_t element_size, Method method) {
  // This kernel never falls back by itself (the op redoes "unconverged" members), so the
  // no-fallback variants are the plain methods here.
  method = BaseMethod(method);
  if (method == Method::kDense) return Path::kDense;
  if (method == Method::kIterative) return Path::kIterative;
  if (JacobiFits(m, n, element_size)) return Path::kJacobi;
  // On the GPU the dense SVD is far slower than the GEMMs the iteration is made of: iterate
  // while the subspace is at most half of min(m, n).
  const int64_t r = std::min(m, n);
  if (r >= 256 && 2 * SubspaceWidth(m, n, max_k) <= r) return Path::kIterative;
  return Path::kDense;
}

namespace {

SubspaceOptions IterativeOptions(int64_t m, int64_t n, int64_t k, double eps) {
  SubspaceOptions opt;
  opt.block = SubspaceWidth(m, n, k);
  // The schedule is fixed (no host round trip decides to go on), so it must reach the test's
  // tolerance in one go where it can: one power step suffices in float32, but float64's
  // tolerance needs (σ_{b+1}/σ_k)^(2q+1) near 1e-12, three steps on an RRAE latent's spectrum
  // (one left it at ~3e-9, so every call was redone on the dense path).
  opt.power_iters = eps < 1e-10 ? 3 : 1;
  // As on the CPU: a quarter of the contract's residual bound (20·√max(m, n)·ε·‖A‖₂).
  opt.tol = 5.0 * std::sqrt(double(std::max(m, n))) * eps;
  opt.seed = static_cast<uint64_t>(m) * 1000003u + static_cast<uint64_t>(n) * 1009u + k;
  return opt;
}

}  // namespace

template <typename T>
Status TruncatedSvd(const Context& ctx, const Allocator& allocate, int64_t batch, int64_t m,
                    int64_t n, const int32_t* k, int64_t max_k, const T* a, const T* init,
                    int64_t init_cols, T* u, T* s, T* vt, int32_t* info, Method method) {
  if (batch == 0) return Status::Ok();
  // An error left from an earlier runtime call on this thread would otherwise be reported by
  // the cudaGetLastError checks below as this call's.
  (void)cudaGetLastError();
  const Path path = ChoosePath(m, n, max_k, sizeof(T), method);
  const SubspaceOptions opt =
      IterativeOptions(m, n, max_k, double(std::numeric_limits<T>::epsilon()));

  // Workspace: per-member flags and solver infos, then the path's (reused by every member).
  DenseWork<T> dense;
  SubspaceWork<T> sub;
  auto carve = [&](Carver& c, int32_t** flags, int** infos) -> Status {
    *flags = c.Take<int32_t>(batch);
    *infos = c.Take<int>(batch);
    if (path == Path::kDense) return CarveDense<T>(ctx, m, n, c, &dense);
    if (path == Path::kIterative) return CarveSubspace<T>(ctx, m, n, max_k, opt.block, c, &sub);
    return Status::Ok();
  };
  int32_t* flags = nullptr;
  int* infos = nullptr;
  Carver counter(nullptr);
  RRAE_FAST_RETURN_IF_ERROR(carve(counter, &flags, &infos));
  char* base = static_cast<char*>(allocate(counter.used()));
  if (base == nullptr) {
    return Status::Error("rrae_fast: could not allocate " + std::to_string(counter.used()) +
                         " bytes of GPU workspace");
  }
  Carver binder(base);
  RRAE_FAST_RETURN_IF_ERROR(carve(binder, &flags, &infos));
  RRAE_FAST_CUDA_TRY(cudaMemsetAsync(flags, 0, sizeof(int32_t) * batch, ctx.stream));
  RRAE_FAST_CUDA_TRY(cudaMemsetAsync(infos, 0, sizeof(int) * batch, ctx.stream));
  LaunchCheckFinite(ctx.stream, batch, m * n, a, flags);

  int32_t passes = 0;
  if (path == Path::kJacobi) {
    RRAE_FAST_RETURN_IF_ERROR(JacobiSvd<T>(ctx.stream, batch, m, n, max_k, a, u, s, vt, flags));
  } else if (path == Path::kDense) {
    // cuSOLVER's SVD is one call per member, issued from here. A redo (kDenseRedo) issues it for
    // the members with k >= 0 only, the ones an iteration left unconverged, rather than for the
    // whole batch: k is read on the host for that, a wait on the stream that only a redo pays
    // (the op has already waited for the condition that sent it here).
    std::vector<int32_t> redo_k;
    if (method == Method::kDenseRedo) {
      redo_k.resize(static_cast<size_t>(batch));
      RRAE_FAST_CUDA_TRY(cudaMemcpyAsync(redo_k.data(), k, sizeof(int32_t) * batch,
                                         cudaMemcpyDeviceToHost, ctx.stream));
      RRAE_FAST_CUDA_TRY(cudaStreamSynchronize(ctx.stream));
    }
    for (int64_t b = 0; b < batch; ++b) {
      if (!redo_k.empty() && redo_k[static_cast<size_t>(b)] < 0) continue;
      RRAE_FAST_RETURN_IF_ERROR(DenseSvd<T>(ctx, m, n, max_k, a + b * m * n, u + b * m * max_k,
                                            s + b * max_k, vt + b * max_k * n, flags + b,
                                            infos + b, dense));
    }
    LaunchInfoToFlags(ctx.stream, batch, infos, kFlagSolverFailed, flags);
  } else {
    passes = static_cast<int32_t>(SubspacePasses(opt));
    for (int64_t b = 0; b < batch; ++b) {
      const T* seed = init_cols > 0 ? init + b * m * init_cols : nullptr;
      RRAE_FAST_RETURN_IF_ERROR(SubspaceSvd<T>(
          ctx, m, n, max_k, a + b * m * n, seed, init_cols, k + b, u + b * m * max_k,
          s + b * max_k, vt + b * max_k * n, flags + b, infos + b, sub, opt));
    }
    LaunchInfoToFlags(ctx.stream, batch, infos, kFlagUnconverged, flags);
  }
  LaunchFinalize(ctx.stream, batch, m, n, max_k, k, flags, static_cast<int32_t>(path), passes, u,
                 s, vt, info);
  LaunchSignConvention(ctx.stream, batch, m, n, max_k, u, vt);
  RRAE_FAST_CUDA_TRY(cudaGetLastError());
  return Status::Ok();
}

template Status TruncatedSvd<float>(const Context&, const Allocator&, int64_t, int64_t, int64_t,
                                    const int32_t*, int64_t, const float*, const float*, int64_t,
                                    float*, float*, float*, int32_t*, Method);
template Status TruncatedSvd<double>(const Context&, const Allocator&, int64_t, int64_t, int64_t,
                                     const int32_t*, int64_t, const double*, const double*,
                                     int64_t, double*, double*, double*, int32_t*, Method);

}  // namespace rrae_fast::cuda
