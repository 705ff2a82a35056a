// Philox4x32-10 known-answer vectors, the documented (seed, offset) -> value mapping, state
// handling and distribution statistics.
#include <doctest/doctest.h>

#include <cmath>
#include <numbers>
#include <vector>

#include "core/ops.h"
#include "core/kernels/philox.h"

using namespace moegrad;
using namespace moegrad::core;

namespace {

struct Stats {
  double mean = 0, var = 0, lo = 0, hi = 0;
};

Stats stats(const Tensor& t) {
  const auto v = t.to_vector<double>();
  Stats s;
  s.lo = s.hi = v.at(0);
  for (double x : v) {
    s.mean += x;
    s.lo = std::min(s.lo, x);
    s.hi = std::max(s.hi, x);
  }
  s.mean /= static_cast<double>(v.size());
  for (double x : v) s.var += (x - s.mean) * (x - s.mean);
  s.var /= static_cast<double>(v.size() - 1);
  return s;
}

void check_block(PhiloxBlock got, std::uint32_t a, std::uint32_t b, std::uint32_t c,
                 std::uint32_t d) {
  CHECK(got.v[0] == a);
  CHECK(got.v[1] == b);
  CHECK(got.v[2] == c);
  CHECK(got.v[3] == d);
}

}  // namespace

TEST_CASE("rng: Philox4x32-10 known-answer vectors (Random123 kat_vectors)") {
  check_block(Philox4x32::apply(PhiloxBlock{{0, 0, 0, 0}}, 0, 0), 0x6627e8d5, 0xe169c58d,
              0xbc57ac4c, 0x9b00dbd8);
  check_block(Philox4x32::apply(PhiloxBlock{{0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff}},
                                0xffffffff, 0xffffffff),
              0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd);
  check_block(Philox4x32::apply(PhiloxBlock{{0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344}},
                                0xa4093822, 0x299f31d0),
              0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1);
  // block(seed, index): key = seed halves, counter low 64 bits = index.
  const std::uint64_t seed = 0x0123456789abcdefull, index = 0xfedcba9876543210ull;
  const PhiloxBlock b = Philox4x32::block(seed, index);
  const PhiloxBlock r =
      Philox4x32::apply(PhiloxBlock{{0x76543210u, 0xfedcba98u, 0u, 0u}}, 0x89abcdefu, 0x01234567u);
  for (int i = 0; i < 4; ++i) CHECK(b.v[i] == r.v[i]);
}

TEST_CASE("rng: values follow the documented counter mapping") {
  const std::uint64_t seed = 42;
  Generator g(seed);
  g.set_state(seed, 7);
  // f32 uniform: lane i%4 of block offset + i/4. Large enough to run multi-threaded.
  const std::int64_t n = 100003;
  const auto f = rand({n}, {DType::f32}, &g).to_vector<float>();
  CHECK(g.offset() == 7 + (n + 3) / 4);
  for (std::int64_t i : {0L, 1L, 2L, 3L, 4L, 5000L, 77777L, n - 1}) {
    const PhiloxBlock blk = Philox4x32::block(seed, 7 + i / 4);
    CHECK(f[i] == philox_uniform_f32(blk.v[i % 4]));
  }
  // f64 uniform: lanes 2(i%2), 2(i%2)+1 of block offset + i/2.
  const std::uint64_t start = g.offset();
  const auto d = rand({n}, {DType::f64}, &g).to_vector<double>();
  CHECK(g.offset() == start + (n + 1) / 2);
  for (std::int64_t i : {0L, 1L, 2L, 99999L, n - 1}) {
    const PhiloxBlock blk = Philox4x32::block(seed, start + i / 2);
    CHECK(d[i] == philox_uniform_f64(blk.v[2 * (i % 2)], blk.v[2 * (i % 2) + 1]));
  }
  // normal: one block per element, Box-Muller cos branch.
  const std::uint64_t s2 = g.offset();
  const auto z = randn({n}, {DType::f64}, &g).to_vector<double>();
  CHECK(g.offset() == s2 + n);
  for (std::int64_t i : {0L, 3L, 50000L, n - 1}) {
    const PhiloxBlock blk = Philox4x32::block(seed, s2 + i);
    const double u1 = 1.0 - philox_uniform_f64(blk.v[0], blk.v[1]);
    const double u2 = philox_uniform_f64(blk.v[2], blk.v[3]);
    CHECK(z[i] == doctest::Approx(std::sqrt(-2 * std::log(u1)) * std::cos(2 * std::numbers::pi * u2)));
  }
  const std::uint64_t s3 = g.offset();
  const auto zf = randn({5}, {DType::f32}, &g).to_vector<float>();
  for (int i = 0; i < 5; ++i) {
    const PhiloxBlock blk = Philox4x32::block(seed, s3 + i);
    const double u1 = 1.0 - philox_uniform_f32(blk.v[0]);
    const double u2 = philox_uniform_f32(blk.v[1]);
    CHECK(zf[i] == doctest::Approx(std::sqrt(-2 * std::log(u1)) * std::cos(2 * std::numbers::pi * u2)).epsilon(1e-5));
  }
}

TEST_CASE("rng: same state gives the same numbers, other states differ") {
  Generator g1(123), g2(123), g3(124);
  const auto a = rand({1000}, {}, &g1).to_vector<float>();
  const auto b = rand({1000}, {}, &g2).to_vector<float>();
  const auto c = rand({1000}, {}, &g3).to_vector<float>();
  CHECK(a == b);
  CHECK(a != c);
  // The next draw continues the stream: different numbers.
  const auto a2 = rand({1000}, {}, &g1).to_vector<float>();
  CHECK(a2 != a);
  CHECK(g1.offset() == 500);
  // Restoring the state replays the draw.
  g2.set_state(123, 250);
  CHECK(rand({1000}, {}, &g2).to_vector<float>() == a2);
  // A different offset gives different numbers; a shifted offset gives shifted numbers.
  Generator g4(123);
  g4.set_state(123, 1);
  const auto s = rand({996}, {}, &g4).to_vector<float>();
  CHECK(std::vector<float>(a.begin() + 4, a.end()) == s);
  // Default generator and manual_seed.
  manual_seed(77);
  const auto d1 = randn({64}, {DType::f64}).to_vector<double>();
  CHECK(default_generator().offset() == 64);
  CHECK(default_generator().seed() == 77);
  manual_seed(77);
  CHECK(randn({64}, {DType::f64}).to_vector<double>() == d1);
  // Empty tensors consume nothing.
  Generator g5(1);
  CHECK(rand({0, 3}, {}, &g5).numel() == 0);
  CHECK(g5.offset() == 0);
  // Advance amounts per op.
  Generator g6(1);
  rand({10}, {DType::f32}, &g6);
  CHECK(g6.offset() == 3);
  rand({10}, {DType::f64}, &g6);
  CHECK(g6.offset() == 8);
  randn({10}, {DType::f32}, &g6);
  CHECK(g6.offset() == 18);
  gumbel({9}, {DType::f32}, &g6);
  CHECK(g6.offset() == 21);
  uniform({3, 3}, -1, 1, {DType::f64}, &g6);
  CHECK(g6.offset() == 26);
}

TEST_CASE("rng: distribution statistics on 1e5 samples") {
  const std::int64_t n = 100000;
  for (DType dt : {DType::f32, DType::f64}) {
    Generator g(2024);
    Tensor u = rand({n}, {dt}, &g);
    CHECK(u.dtype() == dt);
    CHECK(u.shape() == Shape{n});
    Stats s = stats(u);
    CHECK(s.mean == doctest::Approx(0.5).epsilon(0.01));
    CHECK(s.var == doctest::Approx(1.0 / 12).epsilon(0.02));
    CHECK(s.lo >= 0.0);
    CHECK(s.hi < 1.0);

    s = stats(uniform({100, 1000}, -2.0, 3.0, {dt}, &g));
    CHECK(s.mean == doctest::Approx(0.5).epsilon(0.03));
    CHECK(s.var == doctest::Approx(25.0 / 12).epsilon(0.02));
    CHECK(s.lo >= -2.0);
    CHECK(s.hi < 3.0);

    s = stats(randn({n}, {dt}, &g));
    CHECK(std::abs(s.mean) < 0.02);
    CHECK(s.var == doctest::Approx(1.0).epsilon(0.03));
    CHECK(s.lo > -7.0);
    CHECK(s.hi < 7.0);

    s = stats(gumbel({n}, {dt}, &g));
    CHECK(s.mean == doctest::Approx(0.5772156649).epsilon(0.03));
    CHECK(s.var == doctest::Approx(std::numbers::pi * std::numbers::pi / 6).epsilon(0.05));
    CHECK(std::isfinite(s.lo));
    CHECK(std::isfinite(s.hi));
  }
  // Degenerate interval.
  Generator g(3);
  for (double x : uniform({10}, 1.5, 1.5, {}, &g).to_vector<double>()) CHECK(x == 1.5);
}

TEST_CASE("rng: dtype and argument errors") {
  using doctest::Contains;
  CHECK_THROWS_WITH_AS(rand({3}, {DType::i64}), Contains("[rand] needs f32 or f64"), Error);
  CHECK_THROWS_WITH_AS(randn({3}, {DType::i64}), Contains("[randn] needs f32 or f64"), Error);
  CHECK_THROWS_WITH_AS(gumbel({3}, {DType::b8}), Contains("[gumbel] needs f32 or f64"), Error);
  CHECK_THROWS_WITH_AS(uniform({3}, 0, 1, {DType::u8}), Contains("[uniform] needs f32 or f64"),
                       Error);
  CHECK_THROWS_WITH_AS(uniform({3}, 2, 1), Contains("[uniform]"), Error);
  // A failed call consumes nothing.
  Generator g(9);
  CHECK_THROWS_AS(rand({3}, {DType::i64}, &g), Error);
  CHECK(g.offset() == 0);
}
