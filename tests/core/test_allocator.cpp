// The CPU caching allocator: reuse, statistics, release.
#include <doctest/doctest.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <vector>

#include "core/cpu/allocator.h"
#include "core/ops.h"

using namespace moegrad::core;

TEST_CASE("allocator: freed blocks are reused and counted") {
  cpu::empty_cache();
  const auto before = cpu::memory_stats();
  void* first = nullptr;
  {
    Tensor a = empty({1000, 1000});
    first = a.raw_data();
    const auto during = cpu::memory_stats();
    CHECK(during.allocated >= before.allocated + 4000000);
    CHECK(during.peak_allocated >= during.allocated);
  }
  CHECK(cpu::memory_stats().allocated == before.allocated);
  Tensor b = empty({1000, 1000});
  if (cpu::caching_enabled()) {
    CHECK(b.raw_data() == first);  // the same block, no new pages
    CHECK(cpu::memory_stats().cache_hits > before.cache_hits);
  }
  CHECK(reinterpret_cast<std::uintptr_t>(b.raw_data()) % 64 == 0);
}

TEST_CASE("allocator: empty_cache releases cached blocks; peak resets") {
  { Tensor a = empty({512, 512}); }
  cpu::empty_cache();
  const auto s = cpu::memory_stats();
  CHECK(s.reserved == s.allocated);
  cpu::reset_peak_memory();
  CHECK(cpu::memory_stats().peak_allocated == cpu::memory_stats().allocated);
  { Tensor a = empty({256, 256}); }
  CHECK(cpu::memory_stats().peak_allocated >= cpu::memory_stats().allocated + 256 * 256 * 4);
}

TEST_CASE("allocator: zero-size and odd sizes") {
  Tensor z = empty({0});
  CHECK(z.numel() == 0);
  for (int n : {1, 63, 65, 511, 513, 4097, 100003}) {
    Tensor t = full({n}, 1.0, {DType::u8});
    CHECK(t.to_vector<int>().back() == 1);
  }
}

// Blocks of 1 MiB and more are mapped and kept as free extents. These cases use raw blocks,
// mostly untouched, so their sizes cost address space rather than memory. The budgets assume
// the default MOEGRAD_CPU_CACHE_MB / MOEGRAD_CPU_CACHE_HEADROOM_MB.
namespace {
constexpr std::int64_t kMiB = 1 << 20;
bool default_large_cache() {
  return cpu::caching_enabled() && !std::getenv("MOEGRAD_CPU_CACHE_MB") &&
         !std::getenv("MOEGRAD_CPU_CACHE_HEADROOM_MB");
}
char* alloc_mb(std::int64_t mb) { return static_cast<char*>(cpu::allocate(static_cast<std::size_t>(mb * kMiB))); }
void free_mb(void* p, std::int64_t mb) { cpu::deallocate(p, static_cast<std::size_t>(mb * kMiB)); }
}  // namespace

TEST_CASE("allocator: large requests take the best-fitting free extent, split and merged") {
  if (!default_large_cache()) return;
  cpu::empty_cache();
  const auto s0 = cpu::memory_stats();
  CHECK(s0.reserved == s0.allocated);
  char* a = alloc_mb(12);
  char* big = alloc_mb(64);
  CHECK(reinterpret_cast<std::uintptr_t>(big) % (2 * kMiB) == 0);  // huge-page aligned
  free_mb(a, 12);
  free_mb(big, 64);
  CHECK(cpu::memory_stats().reserved == s0.allocated + 76 * kMiB);
  // 10 MiB + 5 bytes rounds to 12 MiB (2 MiB grains): the 12 MiB extent fits best.
  void* b = cpu::allocate(10 * kMiB + 5);
  CHECK(b == a);
  // 8 MiB: the head of the 64 MiB extent; the rest serves the next request.
  char* c = alloc_mb(8);
  char* d = alloc_mb(56);
  CHECK(c == big);
  CHECK(d == big + 8 * kMiB);
  auto s = cpu::memory_stats();
  CHECK(s.cache_hits == s0.cache_hits + 3);
  CHECK(s.allocated == s0.allocated + 76 * kMiB);
  CHECK(s.reserved == s.allocated);
  free_mb(c, 8);
  free_mb(d, 56);  // merges with c's extent again
  CHECK(alloc_mb(64) == big);
  free_mb(big, 64);
  cpu::deallocate(b, 10 * kMiB + 5);
  s = cpu::memory_stats();
  CHECK(s.allocated == s0.allocated);
  CHECK(s.reserved == s.allocated + 76 * kMiB);
  cpu::empty_cache();
  s = cpu::memory_stats();
  CHECK(s.reserved == s.allocated);
  CHECK(s.allocated == s0.allocated);
}

TEST_CASE("allocator: a request no free extent holds reuses their pages, not new ones") {
  if (!default_large_cache()) return;
  cpu::empty_cache();
  const auto s0 = cpu::memory_stats();
  constexpr std::size_t kBlock = 8 * kMiB;
  char* x = alloc_mb(8);
  char* keep = alloc_mb(2);  // likely between x and y, so that they do not merge
  char* y = alloc_mb(8);
  std::fill(x, x + kBlock, char{1});
  std::fill(y, y + kBlock, char{2});
  free_mb(x, 8);
  free_mb(y, 8);
  const auto s1 = cpu::memory_stats();
  // 16 MiB: made of x's and y's pages, moved under one mapping (or their merged extent).
  char* z = alloc_mb(16);
  const auto s2 = cpu::memory_stats();
  CHECK(s2.reserved == s1.reserved);  // nothing new reserved
  CHECK(s2.allocated == s1.allocated + 16 * kMiB);
  if (x + kBlock != y && y + kBlock != x) CHECK(s2.cache_misses == s1.cache_misses + 1);  // moved
  const char first = z[0], second = z[kBlock];
  CHECK(((first == 1 && second == 2) || (first == 2 && second == 1)));  // their contents moved along
  CHECK(std::count(z, z + kBlock, first) == static_cast<std::ptrdiff_t>(kBlock));
  CHECK(std::count(z + kBlock, z + 2 * kBlock, second) == static_cast<std::ptrdiff_t>(kBlock));
  std::fill(z, z + 2 * kBlock, char{3});  // writable throughout
  free_mb(z, 16);
  free_mb(keep, 2);
  cpu::empty_cache();
  const auto s = cpu::memory_stats();
  CHECK(s.reserved == s.allocated);
  CHECK(s.allocated == s0.allocated);
}

TEST_CASE("allocator: reserved bytes stay within a headroom over the live high-water mark") {
  if (!default_large_cache()) return;
  cpu::empty_cache();
  const auto s0 = cpu::memory_stats();
  REQUIRE(s0.allocated < 256 * kMiB);  // the budget below assumes a small base
  std::vector<char*> medium;
  for (int i = 0; i < 40; ++i) medium.push_back(alloc_mb(3));  // 1-4 MiB blocks: their own pool
  for (char* p : medium) free_mb(p, 3);
  auto s = cpu::memory_stats();
  CHECK(s.reserved == s.allocated + 120 * kMiB);
  // 200 MiB from the huge-page pool, which is empty: the medium extents cannot serve it and
  // would lift reserved bytes past the budget, so (the smallest) are unmapped first.
  char* big = alloc_mb(200);
  s = cpu::memory_stats();
  CHECK(s.allocated == s0.allocated + 200 * kMiB);
  CHECK(s.reserved - s.allocated <= std::max<std::int64_t>(64 * kMiB, s.allocated / 8));
  CHECK(s.reserved >= s.allocated);
  free_mb(big, 200);
  cpu::empty_cache();
  s = cpu::memory_stats();
  CHECK(s.reserved == s.allocated);
}

TEST_CASE("allocator: freed blocks beyond MOEGRAD_CPU_CACHE_MB are released") {
  if (!default_large_cache()) return;  // cap 4096 MiB
  cpu::empty_cache();
  const auto s0 = cpu::memory_stats();
  void* a = alloc_mb(2304);
  void* b = alloc_mb(2304);
  free_mb(a, 2304);
  free_mb(b, 2304);  // 4608 MiB would exceed the cap: the second block goes back
  auto s = cpu::memory_stats();
  CHECK(s.allocated == s0.allocated);
  CHECK(s.reserved == s.allocated + 2304 * kMiB);
  cpu::empty_cache();
  CHECK(cpu::memory_stats().reserved == cpu::memory_stats().allocated);
}
