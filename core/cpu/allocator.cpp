#include "core/cpu/allocator.h"

#include <sys/mman.h>

#include <algorithm>
#include <cstdlib>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "core/error.h"

namespace moegrad::core::cpu {
namespace {

constexpr std::size_t kAlign = 64;                // cache line / AVX-512
constexpr std::size_t kHugeAlign = 2u << 20;      // transparent huge page
constexpr std::size_t kHugeThreshold = 4u << 20;  // blocks this big ask for huge pages

// Cache at most this many free bytes (MOEGRAD_CPU_CACHE_MB overrides); 0 disables caching.
std::size_t cache_limit() {
#if defined(__SANITIZE_ADDRESS__)
  return 0;  // reuse would hide use-after-free from AddressSanitizer
#else
  if (const char* env = std::getenv("MOEGRAD_CPU_CACHE_MB")) return std::strtoull(env, nullptr, 10) << 20;
  return std::size_t{4} << 30;
#endif
}

// Size classes: 8 per power of two (at most 12.5% waste), in multiples of 64 bytes.
std::size_t size_class(std::size_t n) {
  if (n <= 512) return std::max<std::size_t>(kAlign, (n + kAlign - 1) / kAlign * kAlign);
  const int log2 = 63 - __builtin_clzll(n - 1);
  const std::size_t step = std::size_t{1} << (log2 - 3);
  return (n + step - 1) / step * step;
}

class CachingAllocator {
 public:
  void* allocate(std::size_t nbytes) {
    const std::size_t cls = size_class(nbytes);
    {
      std::lock_guard<std::mutex> lock(mutex_);
      auto it = free_.find(cls);
      if (it != free_.end() && !it->second.empty()) {
        void* p = it->second.back();
        it->second.pop_back();
        cached_ -= cls;
        note_allocated(cls);
        ++stats_.cache_hits;
        return p;
      }
      ++stats_.cache_misses;
    }
    void* p = system_alloc(cls);
    if (!p) {  // free the cache and try once more before giving up
      empty_cache();
      p = system_alloc(cls);
    }
    if (!p) fail("alloc", "out of memory allocating {} bytes on cpu", nbytes);
    std::lock_guard<std::mutex> lock(mutex_);
    note_allocated(cls);
    return p;
  }

  void deallocate(void* p, std::size_t nbytes) noexcept {
    if (!p) return;
    const std::size_t cls = size_class(nbytes);
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stats_.allocated -= static_cast<std::int64_t>(cls);
      if (cached_ + cls <= limit_) {
        try {
          free_[cls].push_back(p);
          cached_ += cls;
          return;
        } catch (...) {  // no memory for the free list: release the block instead
        }
      }
    }
    std::free(p);
  }

  void empty_cache() {
    std::unordered_map<std::size_t, std::vector<void*>> blocks;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      blocks.swap(free_);
      cached_ = 0;
    }
    for (auto& [cls, ptrs] : blocks)
      for (void* p : ptrs) std::free(p);
  }

  MemoryStats stats() {
    std::lock_guard<std::mutex> lock(mutex_);
    MemoryStats s = stats_;
    s.reserved = s.allocated + static_cast<std::int64_t>(cached_);
    return s;
  }

  bool caching() const { return limit_ > 0; }

  void reset_peak() {
    std::lock_guard<std::mutex> lock(mutex_);
    stats_.peak_allocated = stats_.allocated;
  }

 private:
  static void* system_alloc(std::size_t cls) {
    if (cls < kHugeThreshold) return std::aligned_alloc(kAlign, cls);
    const std::size_t rounded = (cls + kHugeAlign - 1) / kHugeAlign * kHugeAlign;
    void* p = std::aligned_alloc(kHugeAlign, rounded);
    if (p) madvise(p, rounded, MADV_HUGEPAGE);  // advice only: failure is harmless
    return p;
  }

  void note_allocated(std::size_t cls) {
    stats_.allocated += static_cast<std::int64_t>(cls);
    stats_.peak_allocated = std::max(stats_.peak_allocated, stats_.allocated);
  }

  std::mutex mutex_;
  std::unordered_map<std::size_t, std::vector<void*>> free_;
  std::size_t cached_ = 0;
  const std::size_t limit_ = cache_limit();
  MemoryStats stats_;
};

// Never destroyed: tensors in static storage may be freed after main returns.
CachingAllocator& instance() {
  static CachingAllocator* a = new CachingAllocator();
  return *a;
}

}  // namespace

void* allocate(std::size_t nbytes) { return instance().allocate(nbytes); }
void deallocate(void* ptr, std::size_t nbytes) noexcept { instance().deallocate(ptr, nbytes); }
MemoryStats memory_stats() { return instance().stats(); }
void reset_peak_memory() { instance().reset_peak(); }
void empty_cache() { instance().empty_cache(); }
bool caching_enabled() { return instance().caching(); }

}  // namespace moegrad::core::cpu
