// What every device's allocator reports and throws (core/cpu/allocator.h, core/cuda/runtime.h):
// the same statistics fields and the same out-of-memory error on every device.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

#include "core/error.h"

namespace moegrad::core {

// A request a device's allocator cannot meet (over the memory limit, or refused by the system or
// driver): "[alloc] cannot allocate 4096 bytes (4.0 KiB) on cpu: <reason>". empty_for() catches
// it and names the op, dtype and shape instead.
class OutOfMemory : public Error {
 public:
  OutOfMemory(std::size_t bytes, const std::string& device, std::string reason);
  std::size_t bytes() const { return bytes_; }
  const std::string& reason() const { return reason_; }

 private:
  std::size_t bytes_;
  std::string reason_;
};

struct MemoryStats {
  std::int64_t allocated = 0;       // bytes in live tensors' blocks (size class / block size)
  std::int64_t reserved = 0;        // allocated + cached free blocks
  std::int64_t peak_allocated = 0;  // high-water mark of allocated since the last reset
  std::int64_t cache_hits = 0;
  std::int64_t cache_misses = 0;
};

}  // namespace moegrad::core
