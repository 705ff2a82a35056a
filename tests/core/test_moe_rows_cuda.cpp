// The MoE row ops and grouped GEMM on CUDA against the CPU kernels on the same inputs:
// dispatch_rows bit for bit, combine_rows, row_dot and the GEMMs within rounding; row errors
// deferred to the next synchronisation; rows_distinct. Skipped without a CUDA device.
#include <doctest/doctest.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <random>
#include <utility>
#include <vector>

#include "core/build_info.h"
#include "core/memory.h"
#include "core/ops.h"
#include "tests/core/moe_rows_inputs.h"
#include "tests/cuda/cuda_test.h"

using namespace moegrad;
using namespace moegrad::core;
using doctest::Contains;
using I = std::int64_t;
using VI = std::vector<I>;

namespace {

const Device kGpu = Device::cuda(0);

using test::random_rows;
using test::random_tensor;
using test::ti;

// The same values on the GPU, starting `shift` elements into their storage (shift 1 makes the
// data pointer miss 16-byte alignment, so the scalar kernels run).
Tensor gpu(const Tensor& t, I shift = 0) {
  if (shift == 0) return to_device(t, kGpu);
  const Tensor flat = reshape(t, {t.numel()});
  const Tensor padded = cat({zeros({shift}, {t.dtype()}), flat}, 0);
  const Tensor view = reshape(narrow(to_device(padded, kGpu), 0, shift, t.numel()), t.shape());
  REQUIRE(view.is_contiguous());
  REQUIRE(view.device() == kGpu);
  return view;
}

void expect_equal(const Tensor& got, const Tensor& want) {
  REQUIRE(got.device() == kGpu);
  REQUIRE(got.shape() == want.shape());
  REQUIRE(got.dtype() == want.dtype());
  const auto g = got.to_vector<double>(), w = want.to_vector<double>();
  int bad = 0;
  for (std::size_t i = 0; i < g.size(); ++i)
    if (!(g[i] == w[i] && std::signbit(g[i]) == std::signbit(w[i])) && bad++ < 5)
      FAIL_CHECK("element ", i, ": ", g[i], " vs ", w[i]);
  CHECK(bad == 0);
}

void expect_close(const Tensor& got, const Tensor& want, double rtol, double atol) {
  REQUIRE(got.device() == kGpu);
  REQUIRE(got.shape() == want.shape());
  REQUIRE(got.dtype() == want.dtype());
  const auto g = got.to_vector<double>(), w = want.to_vector<double>();
  int bad = 0;
  for (std::size_t i = 0; i < g.size(); ++i)
    if (!(std::abs(g[i] - w[i]) <= atol + rtol * std::abs(w[i])) && bad++ < 5)
      FAIL_CHECK("element ", i, ": ", g[i], " vs ", w[i]);
  CHECK(bad == 0);
}

// Row ops: f32 within 1e-6 relative. row_dot sums d products in another order than the CPU's
// SIMD loop, so near-zero dots also get an absolute allowance that grows like sqrt(d).
double rtol(DType dt) { return dt == DType::f32 ? 1e-6 : 1e-13; }
double atol(DType dt, I d = 1) {
  return (dt == DType::f32 ? 1e-6 : 1e-13) * std::sqrt(static_cast<double>(std::max<I>(d, 1)));
}

// Leaves freed blocks of numel elements full of 7s in the device cache, so outputs allocated
// next are not fresh (zeroed) memory.
void dirty_cache(I numel, DType dt) {
  std::vector<Tensor> junk;
  for (int i = 0; i < 8; ++i) junk.push_back(full({numel}, 7.0, {dt, kGpu}));
}

}  // namespace

TEST_CASE("moe rows cuda: dispatch_rows / combine_rows / row_dot match the CPU kernels") {
  SKIP_WITHOUT_CUDA();
  struct Case {
    I T, k, d, R;
  };
  // d = 5, 19: scalar kernels; d = 8, 64, 1024: 16-byte vectors (f64 too for even d);
  // a large case spans many blocks and grid-stride passes.
  for (const Case c : {Case{6, 1, 5, 9}, Case{37, 2, 19, 80}, Case{21, 3, 8, 70}, Case{512, 2, 64, 1100},
                       Case{300, 4, 1024, 1250}, Case{4096, 2, 1, 9000}}) {
    for (DType dt : {DType::f32, DType::f64}) {
      for (I shift : {0, 1}) {
        CAPTURE(c.T);
        CAPTURE(c.d);
        CAPTURE(shift);
        CAPTURE(dtype_name(dt));
        const Tensor x = random_tensor({c.T, c.d}, dt, 1), s = random_tensor({c.T, c.k}, dt, 2);
        const Tensor y = random_tensor({c.R, c.d}, dt, 3);
        const Tensor row = random_rows(c.T, c.k, c.R, true, 4);
        const Tensor gx = gpu(x, shift), gs = gpu(s, shift), gy = gpu(y, shift), grow = gpu(row);

        // dispatch_rows: every output row written (untargeted ones zero), exactly the CPU's.
        dirty_cache(c.R * c.d, dt);
        const Tensor out = dispatch_rows(x, row, s, c.R);
        const Tensor gout = dispatch_rows(gx, grow, gs, c.R);
        expect_equal(gout, out);

        const I Rrep = c.R / 4 + 1;
        const Tensor rep = random_rows(c.T, c.k, Rrep, false, 5);  // repeated targets
        for (const auto& [r, R] : {std::pair{row, c.R}, std::pair{rep, Rrep}}) {
          const Tensor yr = narrow(y, 0, 0, R), gyr = narrow(gy, 0, 0, R), gr = gpu(r);
          // Same products and sums in the same order (bit for bit where the CPU build does not
          // contract them into FMAs).
          expect_close(combine_rows(gyr, gr, gs), combine_rows(yr, r, s), rtol(dt), atol(dt));
          expect_close(row_dot(gyr, gr, gx), row_dot(yr, r, x), rtol(dt), atol(dt, c.d));
        }
      }
    }
  }
}

TEST_CASE("moe rows cuda: deterministic results, hand values, strided and empty operands") {
  SKIP_WITHOUT_CUDA();
  const Tensor x = from_vector<float>({1, 2, 3, 4, 5, 6}, {3, 2});
  const Tensor row = ti({2, -1, -1, -1, 0, 3}, {3, 2});
  const Tensor s = from_vector<float>({2, 9, 9, 9, 0.5f, 0}, {3, 2});
  const Tensor gx = gpu(x), grow = gpu(row), gs = gpu(s);
  // Fresh device memory is not assumed zero: fill the cache with garbage first.
  dirty_cache(10, DType::f32);
  const Tensor out = dispatch_rows(gx, grow, gs, 5);
  CHECK(out.to_vector<float>() == std::vector<float>{2.5f, 3, 0, 0, 2, 4, 0, 0, 0, 0});
  const Tensor back = combine_rows(out, grow, gs);
  CHECK(back.to_vector<float>() == std::vector<float>{4, 8, 0, 0, 1.25f, 1.5f});
  CHECK(row_dot(out, grow, gx).to_vector<float>() == std::vector<float>{10, 0, 0, 0, 30.5f, 0});

  // Strided operands are made contiguous on the device.
  const Tensor xt = transpose(contiguous(transpose(gx, 0, 1)), 0, 1);
  const Tensor rowt = transpose(contiguous(transpose(grow, 0, 1)), 0, 1);
  REQUIRE_FALSE(xt.is_contiguous());
  REQUIRE_FALSE(rowt.is_contiguous());
  CHECK(dispatch_rows(xt, rowt, gs, 5).to_vector<float>() == out.to_vector<float>());
  CHECK(row_dot(out, rowt, xt).to_vector<float>() == std::vector<float>{10, 0, 0, 0, 30.5f, 0});

  // Repeated runs give identical bits (no float atomics anywhere).
  const Tensor big_y = gpu(random_tensor({700, 96}, DType::f32, 21));
  const Tensor big_w = gpu(random_tensor({2000, 4}, DType::f32, 22));
  const Tensor big_row = gpu(random_rows(2000, 4, 700, false, 23));
  const auto first = combine_rows(big_y, big_row, big_w).to_vector<float>();
  const auto dots = row_dot(big_y, big_row, gpu(random_tensor({2000, 96}, DType::f32, 24))).to_vector<float>();
  for (int i = 0; i < 3; ++i) {
    CHECK(combine_rows(big_y, big_row, big_w).to_vector<float>() == first);
    CHECK(row_dot(big_y, big_row, gpu(random_tensor({2000, 96}, DType::f32, 24))).to_vector<float>() == dots);
  }

  // Empty shapes: no routed rows, k = 0, R = 0, d = 0.
  const Tensor none = gpu(ti({-1, -1, -1}, {3, 1}));
  CHECK(dispatch_rows(gx, none, zeros({3, 1}, {DType::f32, kGpu}), 0).shape() == Shape{0, 2});
  CHECK(dispatch_rows(gx, none, zeros({3, 1}, {DType::f32, kGpu}), 2).to_vector<float>() == std::vector<float>(4, 0));
  CHECK(combine_rows(zeros({0, 2}, {DType::f32, kGpu}), none, ones({3, 1}, {DType::f32, kGpu})).to_vector<float>() ==
        std::vector<float>(6, 0));
  CHECK(combine_rows(out, gpu(ti({}, {3, 0})), zeros({3, 0}, {DType::f32, kGpu})).to_vector<float>() ==
        std::vector<float>(6, 0));
  CHECK(row_dot(zeros({0, 2}, {DType::f32, kGpu}), none, gx).to_vector<float>() == std::vector<float>(3, 0));
  CHECK(row_dot(zeros({5, 0}, {DType::f32, kGpu}), grow, zeros({3, 0}, {DType::f32, kGpu})).to_vector<float>() ==
        std::vector<float>(6, 0));
}

TEST_CASE("moe rows cuda: row errors are deferred to the next synchronisation") {
  SKIP_WITHOUT_CUDA();
  const Tensor x = gpu(random_tensor({6, 4}, DType::f32, 31)), s = gpu(random_tensor({6, 2}, DType::f32, 32));
  const Tensor bad_hi = gpu(ti({0, 1, 2, 3, 4, 5, 6, 7, -1, -1, 8, 9}, {6, 2}));
  // One bad value each, so the message does not depend on which thread records first.
  const Tensor bad_lo = gpu(ti({0, 1, 2, 3, 4, 5, 6, 7, -2, -1, 8, 9}, {6, 2}));
  const Tensor repeated = gpu(ti({0, 7, 2, 3, 4, 5, 6, 7, -1, -1, 8, 9}, {6, 2}));

  // The launch returns; the error comes with the copy to the host.
  Tensor out;
  REQUIRE_NOTHROW(out = dispatch_rows(x, bad_hi, s, 9));
  CHECK_THROWS_WITH_AS(out.to_vector<float>(), Contains("[dispatch_rows] row index 9 out of range [-1, 9)"), Error);
  CHECK_NOTHROW(out.to_vector<float>());  // raised once, then cleared
  REQUIRE_NOTHROW(out = dispatch_rows(x, bad_lo, s, 10));
  CHECK_THROWS_WITH_AS(out.to_vector<float>(), Contains("[dispatch_rows] row index -2 out of range [-1, 10)"), Error);
  REQUIRE_NOTHROW(out = dispatch_rows(x, repeated, s, 10));
  CHECK_THROWS_WITH_AS(out.to_vector<float>(), Contains("[dispatch_rows] row index 7 appears twice"), Error);

  const Tensor y = gpu(random_tensor({9, 4}, DType::f32, 33));
  REQUIRE_NOTHROW(out = combine_rows(y, bad_hi, s));
  CHECK_THROWS_WITH_AS(out.to_vector<float>(), Contains("[combine_rows] row index 9 out of range [-1, 9)"), Error);
  REQUIRE_NOTHROW(out = combine_rows(zeros({9, 0}, {DType::f32, kGpu}), bad_hi, s));  // d = 0 still checks
  CHECK_THROWS_WITH_AS(synchronize(kGpu), Contains("[combine_rows] row index 9 out of range [-1, 9)"), Error);
  CHECK_NOTHROW(combine_rows(gpu(random_tensor({10, 4}, DType::f32, 34)), repeated, s).to_vector<float>());  // repeats are fine
  REQUIRE_NOTHROW(out = row_dot(y, bad_hi, x));
  CHECK_THROWS_WITH_AS(out.to_vector<float>(), Contains("[row_dot] row index 9 out of range [-1, 9)"), Error);

  // Later work is unaffected.
  const Tensor good = gpu(ti({0, 1, 2, 3, 4, 5, 6, 7, -1, -1, 8, -1}, {6, 2}));
  CHECK(dispatch_rows(x, good, s, 9).to_vector<float>() ==
        dispatch_rows(to_device(x, Device::cpu()), to_device(good, Device::cpu()), to_device(s, Device::cpu()), 9)
            .to_vector<float>());
}

TEST_CASE("moe rows cuda: rows_distinct") {
  SKIP_WITHOUT_CUDA();
  CHECK(rows_distinct(gpu(ti({2, -1, -1, -1, 0, 3}, {3, 2})), 5));
  CHECK_FALSE(rows_distinct(gpu(ti({1, -1, 1}, {3, 1})), 5));
  CHECK(rows_distinct(gpu(ti({-1, -1}, {1, 2})), 0));
  CHECK(rows_distinct(gpu(ti({}, {0, 2})), 0));
  // Row 64 and row 0 share no bitset word; 63 and 127 sit at word ends.
  CHECK(rows_distinct(gpu(ti({0, 64, 63, 127, 128}, {5})), 129));
  CHECK_FALSE(rows_distinct(gpu(ti({0, 64, 63, 127, 128, 127}, {6})), 129));
  for (unsigned seed : {41u, 42u}) {
    const Tensor distinct = random_rows(3000, 3, 10000, true, seed);
    const Tensor rep = random_rows(3000, 3, 500, false, seed);
    CHECK(rows_distinct(gpu(distinct), 10000) == rows_distinct(distinct, 10000));
    CHECK(rows_distinct(gpu(rep), 500) == rows_distinct(rep, 500));
  }
  // The answer is a synchronisation: a bad row throws here.
  CHECK_THROWS_WITH_AS(rows_distinct(gpu(ti({0, 3}, {2})), 3), Contains("[rows_distinct] row index 3 out of range [-1, 3)"),
                       Error);
  CHECK_THROWS_WITH_AS(rows_distinct(gpu(ti({-2, 0}, {2})), 3),
                       Contains("[rows_distinct] row index -2 out of range [-1, 3)"), Error);
  CHECK(rows_distinct(gpu(ti({0, 2}, {2})), 3));  // the error was cleared
}

TEST_CASE("moe rows cuda: grouped_matmul and its weight gradient match the CPU") {
  SKIP_WITHOUT_CUDA();
  // Variable groups with empty ones (several calls), and equal groups (capacity mode: one
  // strided-batched call), each with x and w in both layouts.
  for (const VI& off : {VI{0, 4, 4, 13, 20, 20}, VI{0, 6, 12, 18, 24}, VI{0, 0, 5, 10, 10, 15}}) {
    for (DType dt : {DType::f32, DType::f64}) {
      for (bool tw : {false, true}) {
        CAPTURE(off.size());
        CAPTURE(dtype_name(dt));
        CAPTURE(tw);
        const double tol = dt == DType::f32 ? 1e-5 : 1e-12;
        const auto [E, R, offsets, x, w, gy] = test::grouped_operands(off, dt, tw);

        const Tensor y = grouped_matmul(gpu(x), gpu(w), offsets, tw);
        expect_close(y, grouped_matmul(x, w, offsets, tw), tol, tol);
        // Strided w (transposed storage) gives the same values.
        const Tensor wt = transpose(contiguous(transpose(gpu(w), 1, 2)), 1, 2);
        REQUIRE_FALSE(wt.is_contiguous());
        expect_close(grouped_matmul(gpu(x), wt, offsets, tw), grouped_matmul(x, w, offsets, tw), tol, tol);

        dirty_cache(w.numel(), dt);  // the gradient is written whole
        const Tensor dw = grouped_matmul_weight_grad(gpu(x), gpu(gy), offsets, tw);
        expect_close(dw, grouped_matmul_weight_grad(x, gy, offsets, tw), tol, tol);
        for (I e = 0; e < E; ++e) {
          if (off[e + 1] != off[e]) continue;
          const auto v = select(dw, 0, e).to_vector<double>();
          CHECK(std::all_of(v.begin(), v.end(), [](double z) { return z == 0.0; }));
        }
      }
    }
  }
  const TensorOptions g32{DType::f32, kGpu};
  // R == 0, E == 0 and a == 0 (inner dim 0 gives zeros).
  CHECK(grouped_matmul(zeros({0, 3}, g32), zeros({2, 3, 4}, g32), ti({0, 0, 0}, {3}), false).shape() == Shape{0, 4});
  dirty_cache(24, DType::f32);
  CHECK(grouped_matmul_weight_grad(zeros({0, 3}, g32), zeros({0, 4}, g32), ti({0, 0, 0}, {3}), true).to_vector<float>() ==
        std::vector<float>(24, 0));
  CHECK(grouped_matmul_weight_grad(zeros({0, 3}, g32), zeros({0, 4}, g32), ti({0}, {1}), false).shape() == Shape{0, 3, 4});
  dirty_cache(6, DType::f32);
  CHECK(grouped_matmul(full({2, 0}, 1.0, g32), zeros({1, 0, 3}, g32), ti({0, 2}, {2}), false).to_vector<float>() ==
        std::vector<float>(6, 0));
  // Offsets stay on the CPU.
  CHECK_THROWS_WITH_AS(grouped_matmul(zeros({2, 3}, g32), zeros({1, 3, 4}, g32), gpu(ti({0, 2}, {2})), false),
                       Contains("[grouped_matmul] offsets must be on the cpu"), Error);
}

TEST_CASE("moe rows cuda: assign_slots gives the CPU's slots, rows and counts; bad ids are deferred") {
  SKIP_WITHOUT_CUDA();
  std::mt19937 rng(7);
  for (const auto& [groups, n, k, E, capacity, outer] :
       std::vector<std::array<I, 6>>{{4, 33, 2, 8, 5, 1}, {6, 17, 3, 4, 3, 2}, {2, 300, 8, 64, 40, 1}}) {
    VI ex(static_cast<std::size_t>(groups * n * k));
    std::vector<std::uint8_t> on(ex.size());
    for (std::size_t i = 0; i < ex.size(); ++i) {
      ex[i] = static_cast<I>(rng() % E);
      on[i] = rng() % 4 != 0;
    }
    const Tensor expert = ti(ex, {groups * n, k});
    Tensor active = empty({groups * n, k}, {DType::u8});
    std::copy(on.begin(), on.end(), active.data<std::uint8_t>());
    for (const bool with_active : {false, true}) {
      const Tensor a = with_active ? active : Tensor{};
      const SlotAssignment want = assign_slots(expert, a, groups, E, capacity, outer);
      const SlotAssignment got = assign_slots(gpu(expert), with_active ? gpu(a) : Tensor{}, groups, E, capacity, outer);
      expect_equal(got.position, want.position);
      expect_equal(got.padded_row, want.padded_row);
      expect_equal(got.routed, want.routed);
      expect_equal(got.kept, want.kept);
    }
  }
  assign_slots(gpu(ti({0, 9}, {2, 1})), {}, 1, 4, 2);
  CHECK_THROWS_WITH_AS(synchronize(kGpu), Contains("[assign_slots] expert id 9 out of range [0, 4)"), Error);
}

TEST_CASE("moe rows cuda: assert_finite reports NaN and Inf at the next synchronisation") {
  SKIP_WITHOUT_CUDA();
  assert_finite(gpu(random_tensor({100, 7}, DType::f32, 3)), "test", "finite values");
  synchronize(kGpu);
  Tensor bad = random_tensor({100, 7}, DType::f64, 4);
  bad.data<double>()[345] = INFINITY;
  assert_finite(gpu(bad), "test", "the logits");
  CHECK_THROWS_WITH_AS(synchronize(kGpu), Contains("[test] the logits contains NaN or Inf"), Error);
  CHECK_THROWS_WITH_AS(assert_finite(bad, "test", "the logits"), Contains("[test] the logits contains NaN or Inf"), Error);
}
