// Random draws on the GPU: one thread per Philox block, the same element mapping and the same
// transforms (core/kernels/rng_math.h) as the CPU, so both devices give identical bits for f64 and
// (up to the device's log/cos/sqrt rounding) for the transforms of f32 values.
#include "core/cuda/launch.cuh"
#include "core/kernels/random.h"
#include "core/kernels/rng_math.h"

namespace moegrad::core::cuda {
namespace {

template <class T, class F>
__global__ void uniform_kernel(T* out, std::int64_t n, std::uint64_t seed, std::uint64_t first, F f) {
  constexpr std::int64_t per = math::uniforms_per_block<T>;
  const std::int64_t nblocks = (n + per - 1) / per;
  MOEGRAD_GRID_STRIDE(bi, nblocks) {
    const PhiloxBlock blk = Philox4x32::block(seed, first + static_cast<std::uint64_t>(bi));
    const std::int64_t base = bi * per;
    for (int j = 0; j < per && base + j < n; ++j) out[base + j] = f(math::block_uniform<T>(blk, j));
  }
}

template <class T>
__global__ void normal_kernel(T* out, std::int64_t n, std::uint64_t seed, std::uint64_t first) {
  MOEGRAD_GRID_STRIDE(i, n) out[i] = math::block_normal<T>(Philox4x32::block(seed, first + static_cast<std::uint64_t>(i)));
}

}  // namespace

template <class T, class F>
void fill_uniform(T* out, std::int64_t n, std::uint64_t seed, std::uint64_t first, F f, int device) {
  if (n == 0) return;
  const std::int64_t nblocks = (n + math::uniforms_per_block<T> - 1) / math::uniforms_per_block<T>;
  uniform_kernel<T, F><<<blocks_for(nblocks), kThreads, 0, stream(device)>>>(out, n, seed, first, f);
  MOEGRAD_CUDA_CHECK_LAUNCH("rand");
}

template <class T>
void fill_normal(T* out, std::int64_t n, std::uint64_t seed, std::uint64_t first, int device) {
  if (n == 0) return;
  normal_kernel<T><<<blocks_for(n), kThreads, 0, stream(device)>>>(out, n, seed, first);
  MOEGRAD_CUDA_CHECK_LAUNCH("randn");
}

}  // namespace moegrad::core::cuda

namespace moegrad::core {

template <class T>
const RandomKernels<T> RandomKernels<T>::cuda = {&cuda::fill_uniform<T, math::UniformUnit>,
                                                 &cuda::fill_uniform<T, math::UniformRange<T>>,
                                                 &cuda::fill_uniform<T, math::GumbelFromUniform>, &cuda::fill_normal<T>};
template const RandomKernels<float> RandomKernels<float>::cuda;
template const RandomKernels<double> RandomKernels<double>::cuda;

}  // namespace moegrad::core
