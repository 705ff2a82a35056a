#include "core/cpu/allocator.h"

#include <sys/mman.h>

#include <algorithm>
#include <cstdlib>
#include <iterator>
#include <map>
#include <mutex>
#include <new>
#include <set>
#include <unordered_map>
#include <utility>
#include <vector>

#include "core/checked_math.h"
#include "core/cpu/memory_limit.h"
#include "core/error.h"

namespace moegrad::core::cpu {
namespace {

constexpr std::size_t kAlign = 64;                // cache line / AVX-512
constexpr std::size_t kMiB = std::size_t{1} << 20;
constexpr std::size_t kLargeMin = kMiB;           // from here on: mapped blocks
constexpr std::size_t kHugeAlign = 2 * kMiB;      // transparent huge page
constexpr std::size_t kHugeThreshold = 4 * kMiB;  // blocks this big ask for huge pages

std::size_t env_mb(const char* name, std::size_t fallback_mb) {
  const char* env = std::getenv(name);
  return (env ? std::strtoull(env, nullptr, 10) : fallback_mb) * kMiB;
}

// Cache at most this many free bytes (MOEGRAD_CPU_CACHE_MB); 0 disables caching.
std::size_t cache_limit() {
#if defined(__SANITIZE_ADDRESS__)
  return 0;  // reuse would hide use-after-free from AddressSanitizer
#else
  return env_mb("MOEGRAD_CPU_CACHE_MB", 4096);
#endif
}

// Small blocks: 8 size classes per power of two (at most 12.5% waste), multiples of 64 bytes.
std::size_t size_class(std::size_t n) {
  if (n <= 512) return std::max<std::size_t>(kAlign, (n + kAlign - 1) / kAlign * kAlign);
  const int log2 = 63 - __builtin_clzll(n - 1);
  const std::size_t step = std::size_t{1} << (log2 - 3);
  return (n + step - 1) / step * step;
}

// Large blocks come straight from mmap: releasing any part of one returns its pages at once
// (free() would leave them to glibc's heap), and neighbouring blocks can be merged.
char* map_block(std::size_t size, bool huge) {
  const int prot = PROT_READ | PROT_WRITE, flags = MAP_PRIVATE | MAP_ANONYMOUS;
  if (!huge) {
    void* p = mmap(nullptr, size, prot, flags, -1, 0);
    return p == MAP_FAILED ? nullptr : static_cast<char*>(p);
  }
  // Over-map and cut to a 2 MiB boundary so that whole huge pages can back the block.
  const std::size_t span = size + kHugeAlign;
  void* raw = mmap(nullptr, span, prot, flags, -1, 0);
  if (raw == MAP_FAILED) return nullptr;
  char* const lo = static_cast<char*>(raw);
  char* const p = lo + (kHugeAlign - reinterpret_cast<std::uintptr_t>(lo) % kHugeAlign) % kHugeAlign;
  if (p > lo) munmap(lo, static_cast<std::size_t>(p - lo));
  if (lo + span > p + size) munmap(p + size, static_cast<std::size_t>(lo + span - (p + size)));
  madvise(p, size, MADV_HUGEPAGE);  // advice only: failure is harmless
  return p;
}

// Small blocks, and every block when caching is off (AddressSanitizer checks heap blocks only).
void* heap_alloc(std::size_t cls) {
  if (cls < kHugeThreshold) return std::aligned_alloc(kAlign, cls);
  const std::size_t rounded = (cls + kHugeAlign - 1) / kHugeAlign * kHugeAlign;
  void* p = std::aligned_alloc(kHugeAlign, rounded);
  if (p) madvise(p, rounded, MADV_HUGEPAGE);
  return p;
}

struct Span {
  char* ptr;
  std::size_t size;
};

// Free mapped memory as extents: a request takes the head of the smallest extent that holds it
// (best fit) and a freed block merges with free neighbours, so memory freed at one shape serves
// the next shapes (a MoE step's shapes follow the routed row counts). Not thread-safe.
class ExtentPool {
 public:
  ExtentPool(std::size_t grain, bool huge) : grain_(grain), huge_(huge) {}
  std::size_t round(std::size_t n) const { return (n + grain_ - 1) / grain_ * grain_; }
  bool huge() const { return huge_; }
  bool empty() const { return by_size_.empty(); }
  std::size_t smallest() const { return by_size_.begin()->first; }

  // Never throws: the rest of a split extent reuses its nodes.
  char* take(std::size_t size) {
    const auto it = by_size_.lower_bound({size, nullptr});
    if (it == by_size_.end()) return nullptr;
    char* const p = it->second;
    const std::size_t rest = it->first - size;
    auto size_node = by_size_.extract(it);
    auto addr_node = by_addr_.extract(p);
    if (rest > 0) put(std::move(addr_node), std::move(size_node), p + size, rest);
    return p;
  }

  // Strong guarantee: throws (no memory for nodes) before changing anything.
  void give(char* p, std::size_t size) {
    auto next = by_addr_.lower_bound(p);
    const bool merge_next = next != by_addr_.end() && next->first == p + size;
    auto prev = next == by_addr_.begin() ? by_addr_.end() : std::prev(next);
    const bool merge_prev = prev != by_addr_.end() && prev->first + prev->second == p;
    if (!merge_next && !merge_prev) {
      const auto a = by_addr_.emplace(p, size).first;
      try {
        by_size_.emplace(size, p);
      } catch (...) {
        by_addr_.erase(a);
        throw;
      }
      return;
    }
    AddrNode addr_node;
    SizeNode size_node;
    if (merge_next) {
      size_node = by_size_.extract({next->second, next->first});
      size += next->second;
      addr_node = by_addr_.extract(next);
    }
    if (merge_prev) {
      size_node = by_size_.extract({prev->second, prev->first});
      p = prev->first;
      size += prev->second;
      addr_node = by_addr_.extract(prev);
    }
    put(std::move(addr_node), std::move(size_node), p, size);
  }

  Span pop_smallest() { return pop(by_size_.begin()); }
  Span pop_largest() { return pop(std::prev(by_size_.end())); }

 private:
  using AddrNode = std::map<char*, std::size_t>::node_type;
  using SizeNode = std::set<std::pair<std::size_t, char*>>::node_type;

  void put(AddrNode addr_node, SizeNode size_node, char* p, std::size_t size) {
    addr_node.key() = p;
    addr_node.mapped() = size;
    size_node.value() = {size, p};
    by_addr_.insert(std::move(addr_node));
    by_size_.insert(std::move(size_node));
  }

  Span pop(std::set<std::pair<std::size_t, char*>>::iterator it) {
    const auto [size, p] = *it;
    by_size_.erase(it);
    by_addr_.erase(p);
    return {p, size};
  }

  const std::size_t grain_;
  const bool huge_;
  std::map<char*, std::size_t> by_addr_;             // free extents: start -> size
  std::set<std::pair<std::size_t, char*>> by_size_;  // the same, for best fit
};

constexpr const char* kRefused = "the system refused it (out of memory)";

class CachingAllocator {
 public:
  void* allocate(std::size_t nbytes) {
    check_limit(nbytes);  // before malloc / mmap: overcommit would accept and then crawl
    if (caching() && nbytes >= kLargeMin) return allocate_large(nbytes);
    const std::size_t cls = size_class(nbytes);
    if (caching()) {
      std::lock_guard<std::mutex> lock(mutex_);
      auto it = small_.find(cls);
      if (it != small_.end() && !it->second.empty()) {
        void* p = it->second.back();
        it->second.pop_back();
        cached_ -= cls;
        note_allocated(cls);
        ++stats_.cache_hits;
        return p;
      }
      ++stats_.cache_misses;
    }
    void* p = heap_alloc(cls);
    if (!p) {  // free the cache and try once more before giving up
      empty_cache();
      p = heap_alloc(cls);
    }
    if (!p) throw OutOfMemory(nbytes, "cpu", kRefused);
    std::lock_guard<std::mutex> lock(mutex_);
    note_allocated(cls);
    return p;
  }

  void deallocate(void* p, std::size_t nbytes) noexcept {
    if (!p) return;
    if (caching() && nbytes >= kLargeMin) return deallocate_large(static_cast<char*>(p), nbytes);
    const std::size_t cls = size_class(nbytes);
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stats_.allocated -= static_cast<std::int64_t>(cls);
      if (caching() && cached_ + cls <= limit_) {
        try {
          small_[cls].push_back(p);
          cached_ += cls;
          return;
        } catch (...) {  // no memory for the free list: release the block instead
        }
      }
    }
    std::free(p);
  }

  void empty_cache() {
    std::unordered_map<std::size_t, std::vector<void*>> small;
    std::vector<Span> large;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      small.swap(small_);
      for (ExtentPool* pool : {&medium_, &large_})
        while (!pool->empty()) {
          large.push_back(pool->pop_smallest());
          forget_cuts(large.back());
        }
      cached_ = 0;
      high_water_ = static_cast<std::size_t>(stats_.allocated);  // a fresh budget
    }
    for (auto& [cls, ptrs] : small)
      for (void* p : ptrs) std::free(p);
    for (const Span& s : large) munmap(s.ptr, s.size);
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
  void check_limit(std::size_t nbytes) {
    std::string why;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      why = over_memory_limit(nbytes, static_cast<std::uint64_t>(stats_.allocated));
    }
    if (!why.empty()) throw OutOfMemory(nbytes, "cpu", std::move(why));
  }

  // 1-4 MiB blocks on small pages (a huge page would fault in up to 2 MiB the block does not
  // use), in 64 KiB grains (a multiple of every Linux page size, as mremap needs); larger ones
  // in whole, aligned huge pages.
  ExtentPool& pool_for(std::size_t nbytes) { return nbytes < kHugeThreshold ? medium_ : large_; }

  void* allocate_large(std::size_t nbytes) {
    ExtentPool& pool = pool_for(nbytes);
    const std::size_t size = pool.round(nbytes);
    std::vector<Span> moves, release;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (char* p = pool.take(size)) {
        cached_ -= size;
        ++stats_.cache_hits;
        note_allocated(size);
        return p;
      }
      ++stats_.cache_misses;
      // No free extent holds the request: the pages of smaller ones are moved under a fresh
      // mapping (mremap moves page tables: no copies, no faults), so a fragmented cache costs
      // neither new memory nor first-touch faults.
      std::size_t moved = 0;
      while (moved < size && !pool.empty()) {
        char* q = pool.take(size - moved);
        const Span e = q ? Span{q, size - moved} : pool.pop_largest();
        cached_ -= e.size;
        split_at_cuts(e, moves);
        moved += e.size;
      }
      while (over_budget(size)) {
        release.push_back(pop_smallest());
        forget_cuts(release.back());
      }
    }
    for (const Span& s : release) munmap(s.ptr, s.size);
    char* p = map_block(size, pool.huge());
    if (!p) {
      for (const Span& s : moves) munmap(s.ptr, s.size);
      moves.clear();
      empty_cache();
      p = map_block(size, pool.huge());
    }
    if (!p) throw OutOfMemory(nbytes, "cpu", kRefused);
    std::size_t off = 0;
    for (const Span& s : moves) {
      // Fails only where a mapping boundary inside s went unrecorded: its pages go back to the
      // system and fresh ones fault in instead.
      if (mremap(s.ptr, s.size, s.size, MREMAP_MAYMOVE | MREMAP_FIXED, p + off) == MAP_FAILED)
        munmap(s.ptr, s.size);
      off += s.size;
    }
    std::lock_guard<std::mutex> lock(mutex_);
    forget_cuts({p, size});  // stale cuts inside the fresh mapping go, its edges stay
    off = 0;
    for (const Span& s : moves) add_cut(p + (off += s.size));  // each moved piece is a mapping
    note_allocated(size);
    return p;
  }

  void deallocate_large(char* p, std::size_t nbytes) noexcept {
    ExtentPool& pool = pool_for(nbytes);
    const std::size_t size = pool.round(nbytes);
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stats_.allocated -= static_cast<std::int64_t>(size);
      if (cached_ + size <= limit_) {
        try {
          pool.give(p, size);
          cached_ += size;
          return;
        } catch (...) {  // no memory for the free lists: release the block instead
        }
      }
    }
    munmap(p, size);
  }

  // Reserved bytes may exceed the high-water mark of live bytes (counting this request) by the
  // headroom: max(MOEGRAD_CPU_CACHE_HEADROOM_MB, 1/8 of that mark). Beyond it, free extents
  // are unmapped (the smallest first) before a fresh block is mapped.
  bool over_budget(std::size_t size) const {
    if (medium_.empty() && large_.empty()) return false;
    const std::size_t live = static_cast<std::size_t>(stats_.allocated) + size;
    const std::size_t mark = std::max(high_water_, live);
    return live + cached_ > mark + std::max(headroom_, mark / 8);
  }

  Span pop_smallest() {
    ExtentPool& pool = large_.empty() || (!medium_.empty() && medium_.smallest() <= large_.smallest())
                           ? medium_ : large_;
    const Span s = pool.pop_smallest();
    cached_ -= s.size;
    return s;
  }

  // mremap moves only ranges within one mapping (VMA). cuts_ holds every address where one of
  // ours may end (a superset is harmless: a missing one makes a move fail, never corrupts).
  void add_cut(char* p) noexcept {
    try {
      cuts_.insert(p);
    } catch (...) {
    }
  }
  // [s, s + size) is about to be unmapped or moved away: one mapping ends at each edge.
  void forget_cuts(const Span& s) noexcept {
    cuts_.erase(cuts_.upper_bound(s.ptr), cuts_.lower_bound(s.ptr + s.size));
    add_cut(s.ptr);
    add_cut(s.ptr + s.size);
  }
  // Appends e to `out` split where mappings may end, and forgets those cuts (e moves away).
  void split_at_cuts(const Span& e, std::vector<Span>& out) {
    char* a = e.ptr;
    for (auto it = cuts_.upper_bound(a); it != cuts_.end() && *it < e.ptr + e.size; ++it) {
      out.push_back({a, static_cast<std::size_t>(*it - a)});
      a = *it;
    }
    out.push_back({a, static_cast<std::size_t>(e.ptr + e.size - a)});
    forget_cuts(e);
  }

  void note_allocated(std::size_t bytes) {
    stats_.allocated += static_cast<std::int64_t>(bytes);
    stats_.peak_allocated = std::max(stats_.peak_allocated, stats_.allocated);
    high_water_ = std::max(high_water_, static_cast<std::size_t>(stats_.allocated));
  }

  std::mutex mutex_;
  std::unordered_map<std::size_t, std::vector<void*>> small_;  // size class -> free blocks
  std::set<char*> cuts_;  // where our mappings may end (see add_cut)
  ExtentPool medium_{64u << 10, false};
  ExtentPool large_{kHugeAlign, true};
  std::size_t cached_ = 0;      // free bytes held, small and large
  std::size_t high_water_ = 0;  // most live bytes since start or empty_cache()
  const std::size_t limit_ = cache_limit();
  const std::size_t headroom_ = env_mb("MOEGRAD_CPU_CACHE_HEADROOM_MB", 64);
  MemoryStats stats_;
};

// Never destroyed: tensors in static storage may be freed after main returns.
CachingAllocator& instance() {
  static CachingAllocator* a = new CachingAllocator();
  return *a;
}

}  // namespace

void* allocate(std::size_t nbytes) {
  try {
    return instance().allocate(nbytes);
  } catch (const std::bad_alloc&) {  // a free list or map node: the request failed all the same
    throw OutOfMemory(nbytes, "cpu", kRefused);
  }
}
void deallocate(void* ptr, std::size_t nbytes) noexcept { instance().deallocate(ptr, nbytes); }
MemoryStats memory_stats() { return instance().stats(); }
void check_host_allocation(const char* op, std::uint64_t bytes, const std::string& what) {
  const std::string why = over_memory_limit(bytes, static_cast<std::uint64_t>(memory_stats().allocated));
  if (!why.empty()) fail(op, "cannot allocate {} for {} on cpu: {}", bytes_str(bytes), what, why);
}
void reset_peak_memory() { instance().reset_peak(); }
void empty_cache() { instance().empty_cache(); }
bool caching_enabled() { return instance().caching(); }

}  // namespace moegrad::core::cpu
