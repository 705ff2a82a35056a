// CUDA and cuBLAS calls checked: a failure throws moegrad::Error naming the call and file:line.
#pragma once
#include <cuda_runtime_api.h>

#include "core/error.h"

#define MOEGRAD_CUDA_CHECK(call)                                                         \
  do {                                                                                   \
    const cudaError_t err_ = (call);                                                     \
    if (err_ != cudaSuccess)                                                             \
      ::moegrad::fail("cuda", "{} failed: {} ({}:{})", #call, cudaGetErrorString(err_),  \
                      __FILE__, __LINE__);                                               \
  } while (0)

// After a kernel launch: a bad launch configuration or an earlier asynchronous fault.
#define MOEGRAD_CUDA_CHECK_LAUNCH(op)                                                        \
  do {                                                                                       \
    const cudaError_t err_ = cudaGetLastError();                                             \
    if (err_ != cudaSuccess)                                                                 \
      ::moegrad::fail(op, "kernel launch failed: {} ({}:{})", cudaGetErrorString(err_),      \
                      __FILE__, __LINE__);                                                   \
  } while (0)

namespace moegrad::core::cuda {

// The device's one stream (created on first use); also makes `device` current.
cudaStream_t stream(int device);

}  // namespace moegrad::core::cuda
