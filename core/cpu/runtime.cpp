// The CPU's DeviceRuntime table (core/device_runtime.h): the caching allocator of
// core/cpu/allocator.h; the CPU never queues work, so there is nothing to wait for.
#include <omp.h>

#include <cstdint>
#include <cstring>

#include "core/cpu/allocator.h"
#include "core/cpu/loops.h"  // threads_for
#include "core/device_runtime.h"

namespace moegrad::core::cpu {
namespace {

void* allocate_on(std::size_t nbytes, int) { return allocate(nbytes); }
void deallocate_on(void* ptr, std::size_t nbytes, int) noexcept { deallocate(ptr, nbytes); }
// A large copy is split over the OpenMP threads, like the elementwise copy loops (loops.h).
void copy_bytes(void* dst, const void* src, std::size_t nbytes, int) {
  const auto n = static_cast<std::int64_t>(nbytes);
  const int nthreads = threads_for(n / 8);
#pragma omp parallel num_threads(nthreads) if (nthreads > 1)
  {
    const std::int64_t t = omp_get_thread_num(), T = omp_get_num_threads();
    const std::int64_t b0 = n * t / T, b1 = n * (t + 1) / T;
    if (b1 > b0) std::memcpy(static_cast<char*>(dst) + b0, static_cast<const char*>(src) + b0, b1 - b0);
  }
}
MemoryStats stats_on(int) { return memory_stats(); }
void reset_peak_on(int) { reset_peak_memory(); }
void empty_cache_on(int) { empty_cache(); }
void synchronize(int) {}
std::int64_t host_wait_count(int) { return 0; }

}  // namespace
}  // namespace moegrad::core::cpu

namespace moegrad::core {

const DeviceRuntime DeviceRuntime::cpu = {
    .allocate = cpu::allocate_on,
    .deallocate = cpu::deallocate_on,
    .copy_bytes = cpu::copy_bytes,
    .memory_stats = cpu::stats_on,
    .reset_peak_memory = cpu::reset_peak_on,
    .empty_cache = cpu::empty_cache_on,
    .synchronize = cpu::synchronize,
    .host_wait_count = cpu::host_wait_count,
};

}  // namespace moegrad::core
