// The CUDA runtime inside core/cuda (host code): devices, the caching allocator, copies, the one
// stream per device, deferred kernel errors. Built only when CUDA is on; the rest of core reaches
// it through DeviceRuntime::cuda (core/device_runtime.h), defined in core/cuda/runtime.cpp.
#pragma once
#include <cstddef>
#include <cstdint>

#include "core/allocation.h"  // MemoryStats

namespace moegrad::core::cuda {

bool available();    // built with CUDA and at least one device present
int device_count();  // 0 when not built or no device

// Caching allocator: freed blocks are kept per size class and handed out again (all kernels run
// on the device's one stream, so a block freed by the host is safe to reuse for the next
// kernel). A failed cudaMalloc empties the cache and tries once more before it throws
// OutOfMemory (the bytes and the driver's reason).
void* device_alloc(std::size_t nbytes, int device);
void device_free(void* ptr, std::size_t nbytes, int device) noexcept;
MemoryStats memory_stats(int device);  // allocated, reserved (= allocated + cached), peak
void reset_peak_memory(int device);
void empty_cache(int device);  // returns cached blocks to the driver

// Copies on the device's stream; a copy to host memory waits for it (and so for every kernel
// queued before) and then raises any deferred kernel error.
void copy_bytes(void* dst, const void* src, std::size_t nbytes, int device);
// Waits for the device's stream, then raises deferred kernel errors (see device_error.h).
void synchronize(int device);
// How many times the host has waited for the device's stream so far (synchronize, copies to
// the host, item(), to_vector(), an allocation retried after running out of memory).
std::int64_t host_wait_count(int device);

}  // namespace moegrad::core::cuda
