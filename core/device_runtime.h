// A device's runtime as a kernel family (core/backend.h): its caching allocator, copies,
// waiting for queued work and its statistics, one table per backend (core/cpu/runtime.cpp,
// core/cuda/runtime.cpp). Storage, core/memory.h and the copies of core/ops/creation.cpp reach
// it through backend<DeviceRuntime>; a CPU-only build has no CUDA table.
#pragma once
#include <cstddef>
#include <cstdint>

#include "core/allocation.h"

namespace moegrad::core {

struct DeviceRuntime {
  // Throws OutOfMemory (never std::bad_alloc) when the request is over the limit or refused.
  void* (*allocate)(std::size_t nbytes, int device);
  void (*deallocate)(void* ptr, std::size_t nbytes, int device) noexcept;
  // Bytes between host memory and this device, or within it; a copy to host memory waits for the
  // device's queued work and raises its deferred kernel errors.
  void (*copy_bytes)(void* dst, const void* src, std::size_t nbytes, int device);
  MemoryStats (*memory_stats)(int device);  // allocated, reserved (= allocated + cached), peak
  void (*reset_peak_memory)(int device);
  void (*empty_cache)(int device);  // returns cached free blocks to the system / driver
  // Waits for the device's queued work (nothing on the CPU), then raises deferred kernel errors.
  void (*synchronize)(int device);
  std::int64_t (*host_wait_count)(int device);  // waits so far (0 on the CPU)

  static const DeviceRuntime cpu;   // core/cpu/runtime.cpp
  static const DeviceRuntime cuda;  // core/cuda/runtime.cpp (CUDA builds only)
};

}  // namespace moegrad::core
