// CUDA runtime calls (host code). Errors become exceptions with the call and file:line.
#include "core/cuda/runtime.h"

#include <cuda_runtime.h>
#include <fmt/format.h>

#include <cstdio>

#include "core/error.h"

#define MOEGRAD_CUDA_CHECK(call)                                                          \
  do {                                                                                    \
    cudaError_t err_ = (call);                                                            \
    if (err_ != cudaSuccess)                                                              \
      ::moegrad::fail("cuda", "{} failed: {} ({}:{})", #call, cudaGetErrorString(err_),   \
                      __FILE__, __LINE__);                                                \
  } while (0)

namespace moegrad::core::cuda {

int device_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();  // clear the sticky "no device" error
    return 0;
  }
  return n;
}

bool available() { return device_count() > 0; }

void* device_alloc(std::size_t nbytes, int device) {
  MOEGRAD_CHECK(device >= 0 && device < device_count(), "cuda", "no device cuda:{} ({} present)",
                device, device_count());
  void* ptr = nullptr;
  MOEGRAD_CUDA_CHECK(cudaSetDevice(device));
  MOEGRAD_CUDA_CHECK(cudaMalloc(&ptr, nbytes == 0 ? 1 : nbytes));
  return ptr;
}

void device_free(void* ptr, int device) noexcept {
  if (cudaSetDevice(device) != cudaSuccess || cudaFree(ptr) != cudaSuccess)
    std::fprintf(stderr, "moegrad: cudaFree failed on cuda:%d\n", device);  // destructors only log
}

void copy_bytes(void* dst, const void* src, std::size_t nbytes) {
  MOEGRAD_CUDA_CHECK(cudaMemcpy(dst, src, nbytes, cudaMemcpyDefault));
}

}  // namespace moegrad::core::cuda
