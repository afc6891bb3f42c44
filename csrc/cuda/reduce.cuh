// Block-wide reductions for the CUDA kernels (blockDim.x a multiple of 32, at most 1024).
#ifndef RRAE_FAST_CUDA_REDUCE_CUH_
#define RRAE_FAST_CUDA_REDUCE_CUH_

namespace rrae_fast::cuda {

__device__ inline double WarpSum(double v) {
  for (int offset = 16; offset > 0; offset /= 2) v += __shfl_down_sync(0xffffffffu, v, offset);
  return v;
}

// The sum of v over the block, returned to every thread. `scratch` holds blockDim.x / 32
// doubles in shared memory; the call synchronises the block (all threads must call it).
__device__ inline double BlockSum(double v, double* scratch) {
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, warps = blockDim.x / 32;
  v = WarpSum(v);
  __syncthreads();  // scratch may still be read by a previous call
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  double total = 0;
  for (int w = 0; w < warps; ++w) total += scratch[w];
  return total;
}

// The largest v over the block, returned to every thread; `scratch` and synchronisation as for
// BlockSum.
__device__ inline double BlockMax(double v, double* scratch) {
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, warps = blockDim.x / 32;
  for (int offset = 16; offset > 0; offset /= 2) {
    v = fmax(v, __shfl_down_sync(0xffffffffu, v, offset));
  }
  __syncthreads();
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  double top = 0;
  for (int w = 0; w < warps; ++w) top = fmax(top, scratch[w]);
  return top;
}

}  // namespace rrae_fast::cuda

#endif  // RRAE_FAST_CUDA_REDUCE_CUH_
