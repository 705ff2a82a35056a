// The CUDA ConvertKernels (core/kernels/convert.h): one grid-stride kernel over the CPU's scalar
// rule (math::bf16_bits_rne), so both devices round alike, bit for bit.
#include "core/cuda/launch.cuh"
#include "core/kernels/bf16_math.h"
#include "core/kernels/convert.h"

namespace moegrad::core::cuda {
namespace {

__global__ void f32_to_bf16_kernel(const float* in, Bf16* out, std::int64_t n) {
  MOEGRAD_GRID_STRIDE(i, n) { out[i].bits = math::bf16_bits_rne(in[i]); }
}

void f32_to_bf16(const float* in, Bf16* out, std::int64_t n, int device) {
  if (n <= 0) return;
  f32_to_bf16_kernel<<<blocks_for(n), kThreads, 0, stream(device)>>>(in, out, n);
  MOEGRAD_CUDA_CHECK_LAUNCH("to_dtype");
}

}  // namespace
}  // namespace moegrad::core::cuda

namespace moegrad::core {
const ConvertKernels ConvertKernels::cuda = {&cuda::f32_to_bf16};
}  // namespace moegrad::core
