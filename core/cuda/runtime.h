// The CUDA runtime as core sees it: memory and copies. Built from core/cuda/*.cpp when CUDA
// is on; cuda_stubs.cpp supplies the same symbols (they throw) in a CPU-only build.
#pragma once
#include <cstddef>

namespace moegrad::core::cuda {

bool available();        // built with CUDA and at least one device present
int device_count();      // 0 when not built or no device
void* device_alloc(std::size_t nbytes, int device);
void device_free(void* ptr, int device) noexcept;
// Byte copies; kind is deduced by the runtime (unified addressing).
void copy_bytes(void* dst, const void* src, std::size_t nbytes);

}  // namespace moegrad::core::cuda
