// Warp and block collectives for the reduction and selection kernels (core/cuda/reduce.cu,
// core/cuda/indexing.cu). Every tree has a fixed shape, so results do not depend on timing.
// Ops follow core/kernels/reduce_math.h: identity() and combine(a, b).
#pragma once
#include <cstdint>
#include <cstring>

namespace moegrad::core::cuda {

constexpr int kWarp = 32;
constexpr unsigned kFullMask = 0xffffffffu;

// Shuffles of any trivially copyable value of at most 8 bytes (bool, u8, f32, f64, i64, ...).
// All 32 lanes must take part.
template <class T, class F> __device__ inline T shfl_bits(T v, F f) {
  static_assert(sizeof(T) <= 8, "shuffle of a value over 8 bytes");
  if constexpr (sizeof(T) > 4) {
    long long b = 0;
    memcpy(&b, &v, sizeof(T));
    b = f(b);
    memcpy(&v, &b, sizeof(T));
  } else {
    int b = 0;
    memcpy(&b, &v, sizeof(T));
    b = f(b);
    memcpy(&v, &b, sizeof(T));
  }
  return v;
}
template <class T> __device__ inline T shfl_down(T v, unsigned delta) {
  return shfl_bits(v, [delta](auto b) { return __shfl_down_sync(kFullMask, b, delta); });
}
template <class T> __device__ inline T shfl_up(T v, unsigned delta) {
  return shfl_bits(v, [delta](auto b) { return __shfl_up_sync(kFullMask, b, delta); });
}
template <class T> __device__ inline T shfl_idx(T v, int lane) {
  return shfl_bits(v, [lane](auto b) { return __shfl_sync(kFullMask, b, lane); });
}

// Tree reduction of the warp's 32 values (lane l combines lane l + 16, then l + 8, ...);
// the result is in lane 0. Types over 8 bytes provide their own shfl_down (found by ADL).
template <class Op, class Acc> __device__ inline Acc warp_reduce(const Op& op, Acc v) {
  for (int off = kWarp / 2; off > 0; off /= 2) v = op.combine(v, shfl_down(v, off));
  return v;
}

// The block's values reduced: each warp's tree, then the warps' results in warp order; the
// result is in thread 0. blockDim.x must be a multiple of 32; every thread must call it.
template <class Op, class Acc> __device__ inline Acc block_reduce(const Op& op, Acc v) {
  __shared__ Acc part[kWarp];
  const int lane = static_cast<int>(threadIdx.x) % kWarp;
  const int warp = static_cast<int>(threadIdx.x) / kWarp;
  const int nwarps = static_cast<int>(blockDim.x) / kWarp;
  v = warp_reduce(op, v);
  __syncthreads();  // an earlier call may still be reading part
  if (lane == 0) part[warp] = v;
  __syncthreads();
  if (warp == 0) v = warp_reduce(op, lane < nwarps ? part[lane] : op.identity());
  return v;
}

// The same results, in every lane / thread.
template <class Op, class Acc> __device__ inline Acc warp_allreduce(const Op& op, Acc v) {
  return shfl_idx(warp_reduce(op, v), 0);
}
template <class Op, class Acc> __device__ inline Acc block_allreduce(const Op& op, Acc v) {
  __shared__ Acc result;
  v = block_reduce(op, v);
  if (threadIdx.x == 0) result = v;
  __syncthreads();
  return result;  // a later call writes result only after block_reduce's barriers
}

// Work on lines shared by a team: a warp per line (Block = false) or a block per line.
// Loops over lines are uniform over the team, so its collectives are safe inside them.
template <bool Block> struct LineTeam {
  __device__ static std::int64_t lane() {
    return Block ? threadIdx.x : threadIdx.x % kWarp;
  }
  __device__ static std::int64_t width() { return Block ? blockDim.x : kWarp; }
  // The first line of this team and the step to its next one.
  __device__ static std::int64_t first() {
    return Block ? blockIdx.x
                 : (static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) / kWarp;
  }
  __device__ static std::int64_t stride() {
    return Block ? gridDim.x : static_cast<std::int64_t>(gridDim.x) * blockDim.x / kWarp;
  }
  template <class Op, class Acc> __device__ static Acc reduce(const Op& op, Acc v) {
    if constexpr (Block) return block_reduce(op, v);
    else return warp_reduce(op, v);
  }
  template <class Op, class Acc> __device__ static Acc allreduce(const Op& op, Acc v) {
    if constexpr (Block) return block_allreduce(op, v);
    else return warp_allreduce(op, v);
  }
};

}  // namespace moegrad::core::cuda
