// CPU memory for tensors: a caching allocator. Freed blocks are kept by size class and
// handed out again, so a training step that allocates the same shapes every iteration stops
// paying for fresh pages (first-touch faults cost more than the math for elementwise ops).
// Large blocks are 2 MiB aligned and asked to use transparent huge pages.
#pragma once
#include <cstddef>
#include <cstdint>

namespace moegrad::core::cpu {

struct MemoryStats {
  std::int64_t allocated = 0;       // bytes in live tensors (rounded to the size class)
  std::int64_t reserved = 0;        // allocated + cached free blocks
  std::int64_t peak_allocated = 0;  // high-water mark of allocated since the last reset
  std::int64_t cache_hits = 0;
  std::int64_t cache_misses = 0;
};

void* allocate(std::size_t nbytes);
void deallocate(void* ptr, std::size_t nbytes) noexcept;
MemoryStats memory_stats();
void reset_peak_memory();
// Returns cached free blocks to the system.
void empty_cache();
// False under AddressSanitizer (reuse would hide use-after-free) or MOEGRAD_CPU_CACHE_MB=0.
bool caching_enabled();

}  // namespace moegrad::core::cpu
