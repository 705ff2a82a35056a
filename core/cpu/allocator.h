// CPU memory for tensors: a caching allocator. Freed blocks are kept and handed out again, so
// a training step that allocates the same shapes every iteration stops paying for fresh pages
// (first-touch faults cost more than the math for elementwise ops).
// - Small blocks (< 1 MiB): kept per size class (8 per power of two).
// - Large blocks: mmap'd, in 64 KiB grains below 4 MiB and in whole, aligned transparent huge
//   pages above; free memory is kept as extents: a request takes the best-fitting one (split),
//   a freed block merges with its free neighbours. A request that no extent holds gets the
//   pages of smaller ones moved under a fresh mapping (mremap: no copy, no fault). So shapes
//   that follow routed row counts reuse the same memory instead of adding blocks.
// - Reserved bytes stay within a headroom over the high-water mark of live bytes: past it, free
//   extents are unmapped (smallest first) before new memory is mapped.
// Environment: MOEGRAD_CPU_CACHE_MB caps the free bytes kept (default 4096; 0 turns caching off);
// MOEGRAD_CPU_CACHE_HEADROOM_MB is the headroom's floor (default 64; the headroom is the larger
// of it and 1/8 of the high-water mark).
#pragma once
#include <cstddef>
#include <cstdint>

namespace moegrad::core::cpu {

struct MemoryStats {
  std::int64_t allocated = 0;       // bytes in live tensors' blocks (size class / block size)
  std::int64_t reserved = 0;        // allocated + cached free blocks
  std::int64_t peak_allocated = 0;  // high-water mark of allocated since the last reset
  std::int64_t cache_hits = 0;
  std::int64_t cache_misses = 0;
};

void* allocate(std::size_t nbytes);
void deallocate(void* ptr, std::size_t nbytes) noexcept;
MemoryStats memory_stats();
void reset_peak_memory();
// Returns cached free blocks to the system and restarts the high-water mark at the live bytes.
void empty_cache();
// False under AddressSanitizer (reuse would hide use-after-free) or MOEGRAD_CPU_CACHE_MB=0.
bool caching_enabled();

}  // namespace moegrad::core::cpu
