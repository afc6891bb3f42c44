// One-sided Jacobi SVD (Hestenes), one block per matrix.
//
// The working copy W (r x c, r = max(m, n), c = min(m, n), column-major in shared memory) is A
// for a tall matrix and Aᵀ for a wide one; for a wide row-major A, Aᵀ column-major is A's own
// memory layout. Each sweep visits every column pair once, in the round-robin order that splits
// a sweep into c − 1 steps of c/2 disjoint pairs; a warp rotates one pair at a time, so the
// pairs of a step run in parallel. A pair (p, q) is rotated when |w_pᵀw_q| > tol·‖w_p‖·‖w_q‖,
// with the rotation that makes the two columns orthogonal; the same rotation is applied to
// V (c x c, starting from I). When a sweep rotates nothing, W = U·Σ (columns orthogonal) and
// A = U Σ Vᵀ (tall) or Aᵀ = U' Σ Vᵀ, i.e. A = V Σ U'ᵀ (wide). Columns whose norm is negligible
// (σ_j <= √r·ε·σ_max, rank deficiency) are replaced by an orthonormal completion, so that U and
// V always have orthonormal columns.
#include <algorithm>
#include <cmath>
#include <limits>

#include "cuda/check.h"
#include "cuda/kernels.h"
#include "cuda/reduce.cuh"
#include "cuda/small_svd.h"

namespace rrae_fast::cuda {

namespace {

constexpr int kThreads = 256;
constexpr int kWarps = kThreads / 32;
constexpr int kMaxSweeps = 40;

__device__ inline double WarpAllSum(double v) {
  for (int offset = 16; offset > 0; offset /= 2) v += __shfl_xor_sync(0xffffffffu, v, offset);
  return v;
}

// The player at round-robin slot `slot` in step `step` (c2 even players, player 0 fixed).
__device__ inline int Player(int slot, int step, int c2) {
  return slot == 0 ? 0 : 1 + (slot - 1 + step) % (c2 - 1);
}

// Orthonormal completion of column j of W (rows r) against the columns in `done`: the unit
// vector e_i least covered by them (the smallest Σ_o W[i][o]²), projected out twice and
// normalised. With f < r finished orthonormal columns the coverages sum to f, so the least is
// at most f / r and e_i keeps at least 1 − f/r ≥ 1/r of its squared norm. (Trying e_0, e_1, ...
// until one kept half of its norm failed for the last column of a square rank-deficient matrix,
// where each e_i keeps only x_i² of the one direction left.) One warp.
template <typename T>
__device__ void CompleteColumn(int r, int c, T* W, int j, const int* done_flags, int lane) {
  double least = 2;
  int cand = 0;
  for (int i = lane; i < r; i += 32) {
    double covered = 0;
    for (int o = 0; o < c; ++o) {
      if (o == j || !done_flags[o]) continue;
      const double w = double(W[i + o * r]);
      covered += w * w;
    }
    if (covered < least) {
      least = covered;
      cand = i;
    }
  }
  for (int offset = 16; offset > 0; offset /= 2) {  // the warp's least, the lower index on ties
    const double other = __shfl_xor_sync(0xffffffffu, least, offset);
    const int other_cand = __shfl_xor_sync(0xffffffffu, cand, offset);
    if (other < least || (other == least && other_cand < cand)) {
      least = other;
      cand = other_cand;
    }
  }
  for (int i = lane; i < r; i += 32) W[i + j * r] = T(i == cand ? 1 : 0);
  __syncwarp();
  for (int pass = 0; pass < 2; ++pass) {
    for (int o = 0; o < c; ++o) {
      if (o == j || !done_flags[o]) continue;
      double dot = 0;
      for (int i = lane; i < r; i += 32) dot += double(W[i + o * r]) * double(W[i + j * r]);
      dot = WarpAllSum(dot);
      for (int i = lane; i < r; i += 32) W[i + j * r] -= T(dot) * W[i + o * r];
      __syncwarp();
    }
  }
  double nrm = 0;
  for (int i = lane; i < r; i += 32) nrm += double(W[i + j * r]) * double(W[i + j * r]);
  nrm = sqrt(WarpAllSum(nrm));
  for (int i = lane; i < r; i += 32) W[i + j * r] = T(double(W[i + j * r]) / nrm);
  __syncwarp();
}

template <typename T>
__global__ void __launch_bounds__(kThreads)
    JacobiKernel(int64_t m, int64_t n, int64_t kw, const T* a, T* u, T* s, T* vt, int32_t* flags) {
  extern __shared__ double shared_words[];
  __shared__ int rotations;
  const int64_t b = blockIdx.x;
  if (flags[b] & kFlagNonFinite) return;  // the epilogue writes NaN
  const bool tall = m >= n;
  const int r = int(tall ? m : n), c = int(tall ? n : m);
  T* W = reinterpret_cast<T*>(shared_words);
  T* V = W + r * c;
  T* sig = V + c * c;
  int* order = reinterpret_cast<int*>(sig + c);
  int* good = order + c;  // 1: the column of W is a finished orthonormal vector
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;

  // The matrix is decomposed scaled by 2^-e, its largest entry in [1/2, 1): the sums of squares
  // below neither overflow nor underflow in double whatever the input's scale (float64 near
  // 1e±200 included), and scaling by a power of two is exact. σ is scaled back on output.
  __shared__ double scratch[kWarps];
  const T* ab = a + b * m * n;
  double local = 0;
  for (int64_t t = threadIdx.x; t < m * n; t += blockDim.x) {
    local = fmax(local, fabs(double(ab[t])));
  }
  int e = 0;
  frexp(BlockMax(local, scratch), &e);  // e = 0 for a zero matrix
  for (int64_t t = threadIdx.x; t < m * n; t += blockDim.x) {
    const int64_t i = t / n, j = t % n;  // A[i, j]
    const T x = T(ldexp(double(ab[t]), -e));
    if (tall) {
      W[i + j * r] = x;
    } else {
      W[t] = x;  // Aᵀ column-major = A row-major
    }
  }
  for (int t = threadIdx.x; t < c * c; t += blockDim.x) V[t] = T(t % c == t / c ? 1 : 0);
  __syncthreads();

  const double tol = sqrt(double(r)) * double(std::numeric_limits<T>::epsilon());
  const int c2 = c + (c & 1);
  bool converged = c < 2;
  for (int sweep = 0; sweep < kMaxSweeps && !converged; ++sweep) {
    if (threadIdx.x == 0) rotations = 0;
    __syncthreads();
    for (int step = 0; step < c2 - 1; ++step) {
      for (int pair = warp; pair < c2 / 2; pair += kWarps) {
        int p = Player(pair, step, c2), q = Player(c2 - 1 - pair, step, c2);
        if (p >= c || q >= c) continue;
        if (p > q) {
          const int tmp = p;
          p = q;
          q = tmp;
        }
        T* wp = W + p * r;
        T* wq = W + q * r;
        double alpha = 0, beta = 0, gamma = 0;
        for (int i = lane; i < r; i += 32) {
          const double x = double(wp[i]), y = double(wq[i]);
          alpha += x * x;
          beta += y * y;
          gamma += x * y;
        }
        alpha = WarpAllSum(alpha);
        beta = WarpAllSum(beta);
        gamma = WarpAllSum(gamma);
        if (!(fabs(gamma) > tol * sqrt(alpha * beta)) || gamma == 0) continue;
        const double zeta = (beta - alpha) / (2 * gamma);
        // For |ζ| > 1e150, ζ² would overflow: t = 1/(2ζ) is then exact to rounding.
        const double t = fabs(zeta) > 1e150
                             ? 0.5 / zeta
                             : (zeta >= 0 ? 1.0 : -1.0) / (fabs(zeta) + sqrt(1 + zeta * zeta));
        const double cs = 1 / sqrt(1 + t * t), sn = cs * t;
        for (int i = lane; i < r; i += 32) {
          const double x = double(wp[i]), y = double(wq[i]);
          wp[i] = T(cs * x - sn * y);
          wq[i] = T(sn * x + cs * y);
        }
        T* vp = V + p * c;
        T* vq = V + q * c;
        for (int i = lane; i < c; i += 32) {
          const double x = double(vp[i]), y = double(vq[i]);
          vp[i] = T(cs * x - sn * y);
          vq[i] = T(sn * x + cs * y);
        }
        if (lane == 0) atomicAdd(&rotations, 1);
      }
      __syncthreads();
    }
    converged = rotations == 0;
    __syncthreads();  // everyone has read `rotations` before it is reset
  }
  if (!converged && threadIdx.x == 0) flags[b] |= kFlagUnconverged;

  // Singular values, then W's columns normalised (negligible ones marked for completion).
  for (int j = warp; j < c; j += kWarps) {
    double nrm = 0;
    for (int i = lane; i < r; i += 32) nrm += double(W[i + j * r]) * double(W[i + j * r]);
    nrm = sqrt(WarpAllSum(nrm));
    if (lane == 0) sig[j] = T(nrm);
  }
  __syncthreads();
  double top = 0;
  for (int j = 0; j < c; ++j) top = fmax(top, double(sig[j]));
  // A completed column's residual is about √2·σ_j: at √r·ε·σ_1 that stays inside the
  // contract's 20·√r·ε·σ_1 (r·ε·σ_1 did not for r > 200). Columns above it are normalised: the
  // relative convergence test keeps them orthogonal whatever their norm.
  const double negligible = sqrt(double(r)) * double(std::numeric_limits<T>::epsilon()) * top;
  for (int j = warp; j < c; j += kWarps) {
    const double sj = double(sig[j]);
    const bool ok = sj > negligible && sj > 0;
    for (int i = lane; i < r; i += 32) W[i + j * r] = ok ? T(double(W[i + j * r]) / sj) : T(0);
    if (lane == 0) good[j] = ok;
  }
  // Descending order (ties: the lower index first).
  for (int j = threadIdx.x; j < c; j += blockDim.x) {
    int rank = 0;
    for (int i = 0; i < c; ++i) {
      rank += sig[i] > sig[j] || (sig[i] == sig[j] && i < j);
    }
    order[rank] = j;
  }
  __syncthreads();
  if (warp == 0) {
    for (int t = 0; t < c; ++t) {
      const int j = order[t];
      if (good[j]) continue;
      CompleteColumn(r, c, W, j, good, lane);
      if (lane == 0) good[j] = 1;
      __syncwarp();
    }
  }
  __syncthreads();

  // Outputs: the first kw triplets in descending order.
  T* ub = u + b * m * kw;
  T* sb = s + b * kw;
  T* vb = vt + b * kw * n;
  for (int t = threadIdx.x; t < kw; t += blockDim.x) sb[t] = T(ldexp(double(sig[order[t]]), e));
  for (int64_t e = threadIdx.x; e < m * kw; e += blockDim.x) {
    const int64_t q = e / kw, t = e % kw;
    const int j = order[t];
    ub[e] = tall ? W[q + j * r] : V[q + j * c];
  }
  for (int64_t e = threadIdx.x; e < kw * n; e += blockDim.x) {
    const int64_t t = e / n, p = e % n;
    const int j = order[t];
    vb[e] = tall ? V[p + j * c] : W[p + j * r];
  }
}

int MaxSharedOptin() {
  int device = 0, bytes = 48 * 1024;
  if (cudaGetDevice(&device) != cudaSuccess ||
      cudaDeviceGetAttribute(&bytes, cudaDevAttrMaxSharedMemoryPerBlockOptin, device) !=
          cudaSuccess) {
    return 48 * 1024;
  }
  return bytes;
}

}  // namespace

size_t JacobiSharedBytes(int64_t m, int64_t n, size_t element_size) {
  const int64_t r = std::max(m, n), c = std::min(m, n);
  return element_size * size_t(r * c + c * c + c) + sizeof(int) * size_t(2 * c) + 16;
}

bool JacobiFits(int64_t m, int64_t n, size_t element_size) {
  // The opt-in limit covers the dynamic shared memory and the kernel's static variables (a few
  // bytes) together.
  constexpr size_t kStaticShared = 64;
  return std::min(m, n) <= kJacobiMaxCols &&
         JacobiSharedBytes(m, n, element_size) + kStaticShared <= size_t(MaxSharedOptin());
}

template <typename T>
Status JacobiSvd(cudaStream_t stream, int64_t batch, int64_t m, int64_t n, int64_t kw, const T* a,
                 T* u, T* s, T* vt, int32_t* flags) {
  if (batch == 0) return Status::Ok();
  const size_t bytes = JacobiSharedBytes(m, n, sizeof(T));
  RRAE_FAST_CUDA_TRY(cudaFuncSetAttribute(
      JacobiKernel<T>, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(bytes)));
  JacobiKernel<T><<<batch, kThreads, bytes, stream>>>(m, n, kw, a, u, s, vt, flags);
  RRAE_FAST_CUDA_TRY(cudaGetLastError());
  return Status::Ok();
}

template Status JacobiSvd<float>(cudaStream_t, int64_t, int64_t, int64_t, int64_t, const float*,
                                 float*, float*, float*, int32_t*);
template Status JacobiSvd<double>(cudaStream_t, int64_t, int64_t, int64_t, int64_t, const double*,
                                  double*, double*, double*, int32_t*);

}  // namespace rrae_fast::cuda
