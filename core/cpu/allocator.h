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
// - Before any malloc or mmap, a request is checked against the memory limit (memory_limit.h):
//   alone, and together with the live bytes.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

#include "core/allocation.h"  // MemoryStats, OutOfMemory

namespace moegrad::core::cpu {

// Throws OutOfMemory (never std::bad_alloc) when the request is over the limit or refused.
void* allocate(std::size_t nbytes);
void deallocate(void* ptr, std::size_t nbytes) noexcept;
MemoryStats memory_stats();
// Host memory held outside tensors (a data source's tables): the same limit check as allocate(),
// counting the live tensor bytes; throws "[op] cannot allocate N bytes (..) for <what> on cpu: ...".
void check_host_allocation(const char* op, std::uint64_t bytes, const std::string& what);
void reset_peak_memory();
// Returns cached free blocks to the system and restarts the high-water mark at the live bytes.
void empty_cache();
// False under AddressSanitizer (reuse would hide use-after-free) or MOEGRAD_CPU_CACHE_MB=0.
bool caching_enabled();

}  // namespace moegrad::core::cpu
