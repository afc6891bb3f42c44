// Small kernels shared by the CUDA paths (see kernels.h). One thread block per column, or a grid
// of (member, slice) blocks per member; reductions in double whatever the element type.
#include <algorithm>
#include <cmath>
#include <limits>

#include "common/svd_types.h"
#include "cuda/kernels.h"
#include "cuda/reduce.cuh"

namespace rrae_fast::cuda {

namespace {

constexpr int kThreads = 256;

__device__ inline double RandomAt(uint64_t seed, uint64_t i) {
  uint64_t z =
      seed * 0x9E3779B97F4A7C15ull + 0x2545F4914F6CDD1Dull + (i + 1) * 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  z ^= z >> 31;
  return static_cast<double>(z >> 11) * (2.0 / 9007199254740992.0) - 1.0;
}

// Grid (member, slice): blockIdx.y splits a large member across blocks, so that a single large
// matrix is read by many SMs rather than one.
template <typename T>
__global__ void CheckFiniteKernel(int64_t per, const T* x, int32_t* flags) {
  const int64_t b = blockIdx.x;
  const T* xb = x + b * per;
  int bad = 0;
  for (int64_t i = int64_t(blockIdx.y) * blockDim.x + threadIdx.x; i < per;
       i += int64_t(gridDim.y) * blockDim.x) {
    bad |= !isfinite(xb[i]);
  }
  if (__syncthreads_or(bad) && threadIdx.x == 0) atomicOr(&flags[b], int32_t(kFlagNonFinite));
}

template <typename T>
__global__ void FillRandomKernel(T* x, int64_t count, uint64_t seed) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < count;
       i += int64_t(gridDim.x) * blockDim.x) {
    x[i] = static_cast<T>(RandomAt(seed, i));
  }
}

template <typename T>
__global__ void SanitizeColumnsKernel(int64_t rows, T* x, int64_t ld, uint64_t seed) {
  T* col = x + blockIdx.x * ld;
  int bad = 0;
  for (int64_t i = threadIdx.x; i < rows; i += blockDim.x) bad |= !isfinite(col[i]);
  if (!__syncthreads_or(bad)) return;
  for (int64_t i = threadIdx.x; i < rows; i += blockDim.x) {
    col[i] = static_cast<T>(RandomAt(seed + blockIdx.x, i));
  }
}

template <typename T>
__global__ void CopyUpperKernel(int64_t b, const T* qr, int64_t rows, T* r) {
  const int64_t j = blockIdx.x;
  for (int64_t i = threadIdx.x; i < b; i += blockDim.x) {
    r[i + j * b] = i <= j ? qr[i + j * rows] : T(0);
  }
}

// One block per column j < kw: column j's residual ‖A v_j − σ_j u_j‖ against tol, in units of
// σ_1; a failing column sets the flag (atomicOr, as several may fail at once).
template <typename T>
__global__ void ResidualTestKernel(int64_t m, int64_t kw, const T* av, const T* u, const T* sig,
                                   const int32_t* k, double tol, int32_t* flag) {
  __shared__ double scratch[kThreads / 32];
  const int64_t j = blockIdx.x;
  const int64_t kk = *k < kw ? *k : kw;
  if (j >= kk) return;  // uniform across the block
  const double top = double(sig[0]);
  // Residuals relative to σ_1, so that their squares neither underflow (tiny float64 inputs,
  // where an unconverged member would pass) nor overflow (huge ones).
  const double unit = top > 0 ? top : 1.0;
  const double sj = double(sig[j]);
  double acc = 0;
  for (int64_t i = threadIdx.x; i < m; i += blockDim.x) {
    const double e = (double(av[i + j * m]) - double(u[i + j * m]) * sj) / unit;
    acc += e * e;
  }
  acc = BlockSum(acc, scratch);  // every thread gets the sum
  const bool bad = !isfinite(top) || !isfinite(acc) || !(sqrt(acc) <= tol);
  if (threadIdx.x == 0 && bad) atomicOr(flag, int32_t(kFlagUnconverged));
}

// Grid-stride: Blocks() caps the grid at 4096 blocks, fewer threads than a large batch has
// members.
__global__ void InfoToFlagsKernel(int64_t count, const int* dev_info, int32_t bit,
                                  int32_t* flags) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < count;
       i += int64_t(gridDim.x) * blockDim.x) {
    if (dev_info[i] != 0) flags[i] |= bit;
  }
}

// Grid (member, slice) as CheckFiniteKernel. Writes the path code, and NaN over every output of
// a failed member or zeros beyond its k; a member with k = kw and no failure (the common case)
// writes nothing else.
template <typename T>
__global__ void FinalizeKernel(int64_t m, int64_t n, int64_t kw, const int32_t* k,
                               const int32_t* flags, int32_t path, int32_t passes, T* u, T* s,
                               T* vt, int32_t* info) {
  const int64_t b = blockIdx.x;
  const int32_t f = flags[b];
  const bool nan_out = (f & (kFlagNonFinite | kFlagSolverFailed)) != 0;
  if (blockIdx.y == 0 && threadIdx.x == 0) {
    int32_t code = path;
    if (f & kFlagNonFinite) {
      code = int32_t(Path::kNonFinite);
    } else if (f & kFlagSolverFailed) {
      code = int32_t(Path::kSolverFailed);
    } else if (f & kFlagUnconverged) {
      code = int32_t(Path::kUnconverged);
    }
    info[2 * b] = code;
    info[2 * b + 1] = passes;
  }
  // Columns (of u; rows of vt) from `first` on are written.
  const int64_t first = nan_out ? 0 : std::min<int64_t>(std::max<int32_t>(k[b], 0), kw);
  if (first >= kw) return;
  const T fill = nan_out ? std::numeric_limits<T>::quiet_NaN() : T(0);
  const int64_t width = kw - first;
  const int64_t start = int64_t(blockIdx.y) * blockDim.x + threadIdx.x;
  const int64_t stride = int64_t(gridDim.y) * blockDim.x;
  T* ub = u + b * m * kw;
  for (int64_t e = start; e < m * width; e += stride) {
    ub[(e / width) * kw + first + e % width] = fill;
  }
  for (int64_t c = first + start; c < kw; c += stride) s[b * kw + c] = fill;
  T* vb = vt + b * kw * n + first * n;  // rows first..kw-1 of vt, contiguous
  for (int64_t e = start; e < width * n; e += stride) vb[e] = fill;
}

// One block per (member, column): the first largest-magnitude entry of u_j decides its sign.
template <typename T>
__global__ void SignConventionKernel(int64_t m, int64_t n, int64_t kw, T* u, T* vt) {
  __shared__ double best_abs[kThreads];
  __shared__ int64_t best_idx[kThreads];
  const int64_t b = blockIdx.x / kw, j = blockIdx.x % kw;
  T* ub = u + b * m * kw;
  T* vb = vt + b * kw * n;
  double my_abs = -1;
  int64_t my_idx = 0;
  for (int64_t q = threadIdx.x; q < m; q += blockDim.x) {
    const double v = fabs(double(ub[q * kw + j]));
    if (v > my_abs) {  // strict: the first index wins within a thread
      my_abs = v;
      my_idx = q;
    }
  }
  best_abs[threadIdx.x] = my_abs;
  best_idx[threadIdx.x] = my_idx;
  __syncthreads();
  for (int stride = blockDim.x / 2; stride > 0; stride /= 2) {
    if (threadIdx.x < stride) {
      const double a2 = best_abs[threadIdx.x + stride];
      const int64_t i2 = best_idx[threadIdx.x + stride];
      if (a2 > best_abs[threadIdx.x] ||
          (a2 == best_abs[threadIdx.x] && i2 < best_idx[threadIdx.x])) {
        best_abs[threadIdx.x] = a2;
        best_idx[threadIdx.x] = i2;
      }
    }
    __syncthreads();
  }
  // Every thread reads the deciding entry before any of them negates it (the thread that owns
  // that row could otherwise flip it before a slower warp has looked).
  const bool flip = ub[best_idx[0] * kw + j] < T(0);
  __syncthreads();
  if (!flip) return;  // uniform across the block
  for (int64_t q = threadIdx.x; q < m; q += blockDim.x) ub[q * kw + j] = -ub[q * kw + j];
  for (int64_t p = threadIdx.x; p < n; p += blockDim.x) vb[j * n + p] = -vb[j * n + p];
}

template <typename T>
__global__ void ZeroIfFlaggedKernel(const int32_t* flag, int32_t bit, T* x, int64_t count) {
  if (!(*flag & bit)) return;
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < count;
       i += int64_t(gridDim.x) * blockDim.x) {
    x[i] = T(0);
  }
}

int Blocks(int64_t count) {
  return static_cast<int>(std::min<int64_t>((count + kThreads - 1) / kThreads, 4096));
}

// The per-member kernels' grid: a member per blockIdx.x, and enough slices of it along y for
// about 16 elements per thread (at most 65535 slices, the y limit).
dim3 MemberGrid(int64_t batch, int64_t per_member) {
  const int64_t slices = (per_member + 16 * kThreads - 1) / (16 * kThreads);
  return dim3(static_cast<unsigned>(batch),
              static_cast<unsigned>(std::clamp<int64_t>(slices, 1, 65535)));
}

}  // namespace

template <typename T>
void LaunchCheckFinite(cudaStream_t stream, int64_t batch, int64_t per, const T* x,
                       int32_t* flags) {
  if (batch > 0) {
    CheckFiniteKernel<T><<<MemberGrid(batch, per), kThreads, 0, stream>>>(per, x, flags);
  }
}

template <typename T>
void LaunchFillRandom(cudaStream_t stream, T* x, int64_t count, uint64_t seed) {
  if (count > 0) FillRandomKernel<T><<<Blocks(count), kThreads, 0, stream>>>(x, count, seed);
}

template <typename T>
void LaunchSanitizeColumns(cudaStream_t stream, int64_t rows, int64_t cols, T* x, int64_t ld,
                           uint64_t seed) {
  if (cols > 0) SanitizeColumnsKernel<T><<<cols, kThreads, 0, stream>>>(rows, x, ld, seed);
}

template <typename T>
void LaunchCopyUpper(cudaStream_t stream, int64_t b, const T* qr, int64_t rows, T* r) {
  CopyUpperKernel<T><<<b, kThreads, 0, stream>>>(b, qr, rows, r);
}

template <typename T>
void LaunchResidualTest(cudaStream_t stream, int64_t m, int64_t kw, const T* av, const T* u,
                        const T* sig, const int32_t* k, double tol, int32_t* flag) {
  if (kw > 0) {
    ResidualTestKernel<T>
        <<<static_cast<unsigned>(kw), kThreads, 0, stream>>>(m, kw, av, u, sig, k, tol, flag);
  }
}

template <typename T>
void LaunchZeroIfFlagged(cudaStream_t stream, const int32_t* flag, int32_t bit, T* x,
                         int64_t count) {
  // Few blocks: they return at once unless the member is flagged, which is rare.
  if (count > 0) {
    ZeroIfFlaggedKernel<T>
        <<<std::min(Blocks(count), 64), kThreads, 0, stream>>>(flag, bit, x, count);
  }
}

void LaunchInfoToFlags(cudaStream_t stream, int64_t count, const int* dev_info, int32_t bit,
                       int32_t* flags) {
  if (count > 0) {
    InfoToFlagsKernel<<<Blocks(count), kThreads, 0, stream>>>(count, dev_info, bit, flags);
  }
}

template <typename T>
void LaunchFinalize(cudaStream_t stream, int64_t batch, int64_t m, int64_t n, int64_t kw,
                    const int32_t* k, const int32_t* flags, int32_t path, int32_t passes, T* u,
                    T* s, T* vt, int32_t* info) {
  if (batch > 0) {
    FinalizeKernel<T><<<MemberGrid(batch, m * kw + kw * n), kThreads, 0, stream>>>(
        m, n, kw, k, flags, path, passes, u, s, vt, info);
  }
}

template <typename T>
void LaunchSignConvention(cudaStream_t stream, int64_t batch, int64_t m, int64_t n, int64_t kw,
                          T* u, T* vt) {
  if (batch * kw > 0) {
    SignConventionKernel<T><<<batch * kw, kThreads, 0, stream>>>(m, n, kw, u, vt);
  }
}

#define RRAE_FAST_INSTANTIATE(T)                                                                 \
  template void LaunchCheckFinite<T>(cudaStream_t, int64_t, int64_t, const T*, int32_t*);        \
  template void LaunchFillRandom<T>(cudaStream_t, T*, int64_t, uint64_t);                        \
  template void LaunchSanitizeColumns<T>(cudaStream_t, int64_t, int64_t, T*, int64_t, uint64_t); \
  template void LaunchCopyUpper<T>(cudaStream_t, int64_t, const T*, int64_t, T*);                \
  template void LaunchResidualTest<T>(cudaStream_t, int64_t, int64_t, const T*, const T*,        \
                                      const T*, const int32_t*, double, int32_t*);               \
  template void LaunchFinalize<T>(cudaStream_t, int64_t, int64_t, int64_t, int64_t,              \
                                  const int32_t*, const int32_t*, int32_t, int32_t, T*, T*, T*,  \
                                  int32_t*);                                                     \
  template void LaunchSignConvention<T>(cudaStream_t, int64_t, int64_t, int64_t, int64_t, T*,    \
                                        T*);                                                     \
  template void LaunchZeroIfFlagged<T>(cudaStream_t, const int32_t*, int32_t, T*, int64_t);

RRAE_FAST_INSTANTIATE(float)
RRAE_FAST_INSTANTIATE(double)
#undef RRAE_FAST_INSTANTIATE

}  // namespace rrae_fast::cuda
