// The CPU caching allocator: reuse, statistics, release.
#include <doctest/doctest.h>

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
