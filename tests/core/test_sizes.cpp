// Sizes past int64 and past the memory limit: every op that computes a shape, a byte count or a
// row count fails with one "[op] ... too large" or "[op] cannot allocate N bytes ..." line before
// it asks for memory (core/checked_math.h, core/cpu/memory_limit.h). Nothing here allocates
// more than a few MiB: huge operands are stride-0 views, and the memory limit is lowered.
#include <doctest/doctest.h>

#include <cstdint>
#include <string>
#include <vector>

#include "core/checked_math.h"
#include "core/cpu/allocator.h"
#include "core/cpu/memory_limit.h"
#include "core/ops.h"
#include "layers/moe/routing.h"
#include "train/data.h"

using namespace moegrad::core;
using doctest::Contains;
using moegrad::Error;

namespace {

constexpr std::int64_t kMax = INT64_MAX;
constexpr std::int64_t k2p40 = std::int64_t{1} << 40;

// A view of `shape` elements that needs one element of memory.
Tensor huge_view(const Shape& shape, DType dtype = DType::f32) {
  return expand(reshape(ones({1}, {dtype}), Shape(shape.size(), 1)), shape);
}

// Lowers the CPU memory limit for one test (no real allocation is ever tried past it).
struct MemoryLimit {
  explicit MemoryLimit(std::int64_t bytes) { cpu::set_memory_limit(bytes); }
  ~MemoryLimit() { cpu::set_memory_limit(0); }
};

std::string message_of(auto&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

}  // namespace

TEST_CASE("sizes: checked arithmetic reports the op and the operands") {
  std::int64_t out = 0;
  CHECK(mul_fits(3, 4, out));
  CHECK(out == 12);
  CHECK_FALSE(mul_fits(kMax, 2, out));
  CHECK_FALSE(add_fits(kMax, 1, out));
  CHECK(saturating_mul(kMax, 16) == kMax);
  CHECK_THROWS_WITH_AS(checked_mul("op", "rows", kMax, 16), "[op] rows is too large: 9223372036854775807 * 16 overflows int64",
                       Error);
  CHECK_THROWS_WITH_AS(checked_add("op", "rows", kMax, 1), Contains("[op] rows is too large"), Error);
  CHECK_THROWS_WITH_AS(checked_product("op", "G * E * c", {k2p40, k2p40, 4}), Contains("[op] G * E * c is too large"),
                       Error);
  CHECK(bytes_str(137438953472) == "137438953472 bytes (128.0 GiB)");
  CHECK(bytes_str(100) == "100 bytes");
}

TEST_CASE("sizes: creation ops reject shapes whose element count overflows int64") {
  CHECK_THROWS_WITH_AS(zeros({kMax, 16}),
                       "[zeros] shape (9223372036854775807, 16) is too large: its element count overflows int64", Error);
  CHECK_THROWS_WITH_AS(empty({k2p40, k2p40}), Contains("[empty] shape (1099511627776, 1099511627776) is too large"), Error);
  CHECK_THROWS_WITH_AS(ones({k2p40, k2p40}), Contains("[ones] shape"), Error);
  CHECK_THROWS_WITH_AS(full({k2p40, k2p40}, 2.0), Contains("[full] shape"), Error);
  CHECK_THROWS_WITH_AS(randn({k2p40, k2p40}), Contains("[randn] shape"), Error);
  CHECK_THROWS_WITH_AS(rand({k2p40, k2p40}), Contains("[rand] shape"), Error);
  CHECK_THROWS_WITH_AS(from_vector<float>({}, {k2p40, k2p40, 0, k2p40}), Contains("[from_vector]"), Error);
  CHECK_THROWS_WITH_AS(arange(0.0, 1e30), Contains("[arange] range start=0 end=1e+30 step=1 is too large"), Error);
  CHECK_THROWS_WITH_AS(zeros({-1}), "[zeros] negative size in shape (-1,)", Error);
  // A zero size makes the count 0 whatever the other sizes; the strides must still fit.
  CHECK(zeros({k2p40, k2p40, 0}).numel() == 0);
  CHECK_THROWS_WITH_AS(zeros({0, k2p40, k2p40}), Contains("[zeros] shape (0, 1099511627776, 1099511627776) is too large"),
                       Error);
}

TEST_CASE("sizes: a byte count past int64 is too large, whatever the element count") {
  // 2^62 elements fit int64; their f64 bytes (2^65) do not.
  CHECK_THROWS_WITH_AS(empty({std::int64_t{1} << 61, 2}, {DType::f64}),
                       "[empty] f64 shape (2305843009213693952, 2) is too large: its byte count overflows int64", Error);
  CHECK_THROWS_WITH_AS(zeros({std::int64_t{1} << 60, 4}), Contains("[zeros] f32 shape"), Error);
  // A huge view is fine (no memory); materialising it is not.
  const Tensor v = huge_view({std::int64_t{1} << 60, 4});
  CHECK(v.numel() == std::int64_t{1} << 62);
  CHECK_THROWS_WITH_AS(contiguous(v), Contains("[clone] f32 shape (1152921504606846976, 4) is too large"), Error);
}

TEST_CASE("sizes: views, broadcasts and joins check the sizes they compute") {
  const Tensor one = ones({1, 1});
  CHECK_THROWS_WITH_AS(expand(one, {k2p40, k2p40}), Contains("[expand] shape (1099511627776, 1099511627776) is too large"),
                       Error);
  const Tensor col = huge_view({k2p40, 1}), row = huge_view({1, k2p40});
  CHECK_THROWS_WITH_AS(add(col, row), Contains("[add] shape (1099511627776, 1099511627776) is too large"), Error);
  CHECK_THROWS_WITH_AS(where(huge_view({k2p40, 1}, DType::b8), col, row), Contains("[where] shape"), Error);
  CHECK_THROWS_WITH_AS(matmul(col, row), Contains("[matmul] shape (1099511627776, 1099511627776) is too large"), Error);
  const Tensor tall = huge_view({std::int64_t{1} << 62, 1});
  CHECK_THROWS_WITH_AS(cat({tall, tall}, 0), Contains("[cat] the result is too large: dim 0 of 2 tensors overflows int64"),
                       Error);
  CHECK_THROWS_WITH_AS(stack({tall, tall, tall}, 0), Contains("[stack] shape (3, 4611686018427387904, 1) is too large"),
                       Error);
  CHECK_THROWS_WITH_AS(pad(ones({2}), {kMax, 1}), Contains("[pad] padding (9223372036854775807, 1) is too large"), Error);
  CHECK_THROWS_WITH_AS(split(ones({4}), std::vector<std::int64_t>{kMax, 1}, 0), Contains("[split] sizes"), Error);
  CHECK_THROWS_WITH_AS(reshape(ones({4}), {k2p40, k2p40, -1}), Contains("[reshape] shape (1099511627776, 1099511627776, -1) is too large"),
                       Error);
  CHECK_THROWS_WITH_AS(view(ones({4}), {k2p40, k2p40}), Contains("[view] shape"), Error);
  CHECK(reshape(ones({0}), {k2p40, k2p40, 0}).numel() == 0);  // a zero among the sizes: count 0
  const Tensor flat = expand(zeros({0, 1, 1}), {0, k2p40, k2p40});
  CHECK_THROWS_WITH_AS(flatten(flat, 1, 2), Contains("[flatten] flattening dims 1..2 of f32(0, 1099511627776, 1099511627776) is too large"),
                       Error);
  CHECK(flatten(flat, 0, 2).shape() == Shape{0});
  CHECK_THROWS_WITH_AS(one_hot(huge_view({k2p40}, DType::i64), k2p40), Contains("[one_hot] shape"), Error);
  CHECK_THROWS_WITH_AS(index_select(huge_view({4, k2p40}), 0, huge_view({k2p40}, DType::i64)),
                       Contains("[index_select] shape (1099511627776, 1099511627776) is too large"), Error);
  // Ranges that once overflowed while being checked.
  CHECK_THROWS_WITH_AS(narrow(ones({10}), 0, 5, kMax), Contains("[narrow] range"), Error);
  const Tensor s = slice(arange(10), 0, 3, 10, kMax);  // one element: the step is never used
  CHECK(s.to_vector<std::int64_t>() == std::vector<std::int64_t>{3});
  CHECK_THROWS_WITH_AS(as_strided(ones({4}), {3, 3}, {kMax, kMax}, 0), Contains("[as_strided]"), Error);
}

TEST_CASE("sizes: an allocation over the memory limit names its bytes, op, dtype and shape") {
  const MemoryLimit limit(std::int64_t{1} << 20);  // 1 MiB
  CHECK(cpu::memory_limit() == (std::int64_t{1} << 20));
  CHECK(cpu::memory_limit_source() == "set by set_memory_limit");
  const std::string m = message_of([] { zeros({1024, 1024}); });
  CHECK(m == "[zeros] cannot allocate 4194304 bytes (4.0 MiB) for a f32 tensor of shape (1024, 1024) on cpu: more "
             "than the memory limit of 1.0 MiB (1048576 bytes: set by set_memory_limit)");
  CHECK_THROWS_WITH_AS(randn({1000, 1000}), Contains("[randn] cannot allocate 4000000 bytes (3.8 MiB) for a f32 tensor"),
                       Error);
  CHECK_THROWS_WITH_AS(matmul(ones({1024, 1}), ones({1, 1024})), Contains("[matmul] cannot allocate 4194304 bytes"), Error);
  // The allocator itself throws OutOfMemory (a moegrad::Error), never std::bad_alloc.
  try {
    cpu::allocate(std::size_t{1} << 40);
    FAIL("allocate did not throw");
  } catch (const OutOfMemory& e) {
    CHECK(e.bytes() == (std::size_t{1} << 40));
    CHECK(std::string(e.what()) == "[alloc] cannot allocate 1099511627776 bytes (1.0 TiB) on cpu: " + e.reason());
  }
  CHECK(zeros({16, 16}).numel() == 256);  // small ones still work
}

TEST_CASE("sizes: live tensors count against the memory limit") {
  const std::int64_t live = cpu::memory_stats().allocated;
  const MemoryLimit limit(live + (std::int64_t{3} << 20));  // room for 3 MiB more
  const Tensor a = empty({512, 1024});                      // 2 MiB
  CHECK_THROWS_WITH_AS(empty({512, 1024}), Contains("already in live tensors, together more than the memory limit"), Error);
  CHECK_THROWS_WITH_AS(cpu::check_host_allocation("data", std::uint64_t{2} << 20, "a table"),
                       Contains("[data] cannot allocate 2097152 bytes (2.0 MiB) for a table on cpu"), Error);
}

TEST_CASE("sizes: the default memory limit is the machine's") {
  cpu::set_memory_limit(0);
  CHECK(cpu::memory_limit() > (std::int64_t{64} << 20));
  CHECK_FALSE(cpu::memory_limit_source().empty());
  CHECK_THROWS_WITH_AS(cpu::set_memory_limit(-1), Contains("[set_memory_limit]"), Error);
  // More than the machine has (physical memory + swap) fails at once, before any mmap.
  const std::int64_t over = cpu::memory_limit() / 4 + 1;  // f32 elements: bytes just past the limit
  CHECK_THROWS_WITH_AS(empty({over}), Contains("more than the memory limit"), Error);
}

TEST_CASE("sizes: MoE routing checks its row counts before it allocates") {
  // A batch of 2^61 tokens (8 per group) as a view: G * E * capacity = 2^58 * 16 * 2 = 2^63.
  const Tensor expert = huge_view({std::int64_t{1} << 61, 2}, DType::i64);
  CHECK_THROWS_WITH_AS(assign_slots(expert, {}, std::int64_t{1} << 58, 16, 2),
                       Contains("[assign_slots] the padded buffer of 288230376151711744 groups x 16 experts x capacity "
                                "2 is too large"),
                       Error);
  CHECK_THROWS_WITH_AS(moegrad::nn::moe::route_tokens(expert, {}, std::int64_t{1} << 62, 4, 16, 2),
                       Contains("[route_tokens] groups * group_size is too large"), Error);
  // The capacity of a huge factor is the group size (no double -> int64 overflow).
  CHECK(moegrad::nn::moe::expert_capacity(1024, 1e300, 16, 4) == 1024);
  CHECK(moegrad::nn::moe::expert_capacity(std::int64_t{1} << 62, 1e300, 1, 4) == std::int64_t{1} << 62);
  // Row checks against a huge row count do not size a bitset by it.
  const Tensor rows = from_vector<std::int64_t>({0, (std::int64_t{1} << 62) - 1, -1, 5}, {2, 2});
  CHECK(rows_distinct(rows, std::int64_t{1} << 62));
  CHECK_FALSE(rows_distinct(from_vector<std::int64_t>({7, 7}, {1, 2}), std::int64_t{1} << 62));
  CHECK_THROWS_WITH_AS(dispatch_rows(ones({2, 4}), rows, ones({2, 2}), std::int64_t{1} << 62),
                       Contains("[dispatch_rows] shape (4611686018427387904, 4) is too large"), Error);
}

TEST_CASE("sizes: the synthetic data sources check batch and table sizes when made") {
  using namespace moegrad::train;
  CHECK_THROWS_WITH_AS(ClusteredRegression({.batch = kMax}), Contains("[ClusteredRegression] shape (9223372036854775807, 16, 16) is too large"),
                       Error);
  CHECK_THROWS_WITH_AS(ClusteredRegression({.batch = std::int64_t{1} << 58}), Contains("is too large"), Error);
  CHECK_THROWS_WITH_AS(PermutedCopy({.vocab = 64, .batch = std::int64_t{1} << 58}),
                       Contains("[PermutedCopy] a batch of shape (288230376151711744, 16) is too large: its byte count"), Error);
  const MemoryLimit limit(std::int64_t{64} << 20);
  CHECK_THROWS_WITH_AS(PermutedCopy({.vocab = std::int64_t{1} << 32}),
                       Contains("[PermutedCopy] cannot allocate 34359738368 bytes (32.0 GiB) for the permutation"), Error);
  CHECK_THROWS_WITH_AS(ClusteredRegression({.dim = 1024, .clusters = std::int64_t{1} << 20}),
                       Contains("for the cluster weights of shape (1048576, 1024, 1024)"), Error);
}
