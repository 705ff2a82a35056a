// Shared by the .cu files: launch geometry, the stream, and recording kernel errors.
#pragma once
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

#include "core/cuda/check.h"
#include "core/cuda/device_error.h"

namespace moegrad::core::cuda {

constexpr int kThreads = 256;

// Blocks for a grid-stride loop over n items: enough to fill the GPU, never more than needed.
inline unsigned blocks_for(std::int64_t n, int threads = kThreads) {
  const std::int64_t want = (n + threads - 1) / threads;
  return static_cast<unsigned>(std::clamp<std::int64_t>(want, 1, 65535 * 8));
}

// Records the first kernel error of the device (see device_error.h); later ones are dropped.
__device__ inline void report_error(DeviceError* slot, DeviceErrorKind kind, const char* op,
                                    long long value, long long lo, long long hi,
                                    const char* what = nullptr) {
  if (atomicCAS(&slot->flag, 0, 1) == 0) {
    slot->kind = kind;
    slot->op = op;
    slot->what = what;
    slot->value = value;
    slot->lo = lo;
    slot->hi = hi;
    __threadfence_system();
  }
}

// for (i = first; i < n; i += grid) in a kernel.
#define MOEGRAD_GRID_STRIDE(i, n)                                                      \
  for (std::int64_t i = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; \
       i < (n); i += static_cast<std::int64_t>(blockDim.x) * gridDim.x)

}  // namespace moegrad::core::cuda
