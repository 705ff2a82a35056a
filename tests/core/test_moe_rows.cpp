// MoE row ops (dispatch_rows, combine_rows, row_dot) and the grouped GEMM against dense
// references built from one_hot / matmul, plus every argument and index error path.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <utility>
#include <vector>

#include "core/ops.h"
#include "tests/core/moe_rows_inputs.h"

using namespace moegrad;
using namespace moegrad::core;
using doctest::Contains;
using I = std::int64_t;
using VI = std::vector<I>;

namespace {

using test::random_rows;
using test::random_tensor;
using test::ti;

// M [T, k, R] in dtype: M[t, j, r] = (row[t, j] == r); unrouted (-1) pairs are all-zero.
Tensor route_matrix(const Tensor& row, I R, DType dtype) {
  Tensor spare = full(row.shape(), static_cast<double>(R), {DType::i64});
  Tensor oh = one_hot(where(lt(row, 0.0), spare, row), R + 1, dtype);
  return narrow(oh, 2, 0, R);
}

// P [T, R] = sum_j factor[t, j] * M[t, j, :].
Tensor weighted_routes(const Tensor& row, const Tensor& factor, I R) {
  return sum(mul(route_matrix(row, R, factor.dtype()), unsqueeze(factor, 2)), {1});
}

void expect_close(const Tensor& got, const Tensor& want, double rtol, double atol) {
  REQUIRE(got.shape() == want.shape());
  const auto g = got.to_vector<double>(), w = want.to_vector<double>();
  int bad = 0;
  for (std::size_t i = 0; i < g.size(); ++i)
    if (!(std::abs(g[i] - w[i]) <= atol + rtol * std::abs(w[i])) && bad++ < 5)
      FAIL_CHECK("element ", i, ": ", g[i], " vs ", w[i]);
  CHECK(bad == 0);
}

struct Tol {
  double rtol, atol;
};
// f32 against an f64 reference of the same (f32) data; f64 against itself.
Tol tol(DType dt) { return dt == DType::f32 ? Tol{1e-6, 1e-5} : Tol{1e-12, 1e-12}; }

}  // namespace

TEST_CASE("moe rows: dispatch_rows / combine_rows / row_dot match one-hot matmuls") {
  struct Case {
    I T, k, d, R;
  };
  // The last case is above the OpenMP grain (T * k * d >= 32768).
  for (const Case c : {Case{6, 1, 5, 9}, Case{37, 2, 19, 80}, Case{21, 3, 8, 70}, Case{512, 2, 64, 1100}}) {
    for (DType dt : {DType::f32, DType::f64}) {
      CAPTURE(c.T);
      CAPTURE(dtype_name(dt));
      const Tol t = tol(dt);
      const Tensor x = random_tensor({c.T, c.d}, dt, 1), s = random_tensor({c.T, c.k}, dt, 2);
      const Tensor y = random_tensor({c.R, c.d}, dt, 3);
      // References in f64 from the same values.
      const Tensor x64 = to_dtype(x, DType::f64), s64 = to_dtype(s, DType::f64),
                   y64 = to_dtype(y, DType::f64);
      const Tensor row = random_rows(c.T, c.k, c.R, true, 4);

      const Tensor out = dispatch_rows(x, row, s, c.R);
      CHECK(out.dtype() == dt);
      expect_close(out, matmul(weighted_routes(row, s64, c.R), x64, true, false), t.rtol, t.atol);

      const I Rrep = c.R / 4 + 1;
      const Tensor rep = random_rows(c.T, c.k, Rrep, false, 5);  // repeated targets
      for (const auto& [r, R] : {std::pair{row, c.R}, std::pair{rep, Rrep}}) {
        const Tensor yr = narrow(y, 0, 0, R), yr64 = narrow(y64, 0, 0, R);
        expect_close(combine_rows(yr, r, s), matmul(weighted_routes(r, s64, R), yr64), t.rtol, t.atol);
        // row_dot: gather a's rows through M [T, k, R] @ a [R, d], then dot with b[t].
        const Tensor gathered = matmul(route_matrix(r, R, DType::f64), yr64);  // [T, k, d]
        expect_close(row_dot(yr, r, x), sum(mul(gathered, unsqueeze(x64, 1)), {2}), t.rtol, t.atol);
      }
    }
  }
}

TEST_CASE("moe rows: hand values, unrouted tokens, non-contiguous inputs") {
  const Tensor x = from_vector<float>({1, 2, 3, 4, 5, 6}, {3, 2});
  const Tensor row = ti({2, -1, -1, -1, 0, 3}, {3, 2});
  const Tensor s = from_vector<float>({2, 9, 9, 9, 0.5f, 0}, {3, 2});
  const Tensor out = dispatch_rows(x, row, s, 5);
  CHECK(out.to_vector<float>() == std::vector<float>{2.5f, 3, 0, 0, 2, 4, 0, 0, 0, 0});
  // Token 1 is not routed: its output row is exactly zero.
  const Tensor back = combine_rows(out, row, s);
  CHECK(back.to_vector<float>() == std::vector<float>{4, 8, 0, 0, 1.25f, 1.5f});
  CHECK(row_dot(out, row, x).to_vector<float>() == std::vector<float>{10, 0, 0, 0, 30.5f, 0});

  // Transposed / strided operands (floats and rows) give the same results.
  const Tensor xt = transpose(contiguous(transpose(x, 0, 1)), 0, 1);
  const Tensor rowt = transpose(contiguous(transpose(row, 0, 1)), 0, 1);
  const Tensor ss = slice(from_vector<float>({2, 7, 9, 7, 9, 7, 9, 7, 0.5f, 7, 0, 7}, {3, 4}), 1, 0, 4, 2);
  REQUIRE_FALSE(xt.is_contiguous());
  REQUIRE_FALSE(rowt.is_contiguous());
  REQUIRE_FALSE(ss.is_contiguous());
  CHECK(dispatch_rows(xt, rowt, ss, 5).to_vector<float>() == out.to_vector<float>());
  CHECK(combine_rows(transpose(contiguous(transpose(out, 0, 1)), 0, 1), rowt, ss).to_vector<float>() ==
        back.to_vector<float>());
  CHECK(row_dot(out, rowt, xt).to_vector<float>() == std::vector<float>{10, 0, 0, 0, 30.5f, 0});

  // Empty shapes: no routed rows, k = 0, R = 0.
  const Tensor none = ti({-1, -1, -1}, {3, 1});
  CHECK(dispatch_rows(x, none, zeros({3, 1}), 0).shape() == Shape{0, 2});
  CHECK(combine_rows(zeros({0, 2}), none, ones({3, 1})).to_vector<float>() == std::vector<float>(6, 0));
  CHECK(combine_rows(out, ti({}, {3, 0}), zeros({3, 0})).to_vector<float>() == std::vector<float>(6, 0));
  CHECK(row_dot(zeros({0, 2}), none, x).to_vector<float>() == std::vector<float>(3, 0));

  CHECK(rows_distinct(row, 5));
  CHECK_FALSE(rows_distinct(ti({1, -1, 1}, {3, 1}), 5));
  CHECK(rows_distinct(ti({-1, -1}, {1, 2}), 0));
}

TEST_CASE("moe rows: grouped_matmul and its weight gradient match per-group matmul") {
  // Groups 1 and 4 empty; then one group far larger than the rest (on the CPU the groups run one
  // after another, each on all threads), and 16 groups of mixed sizes (side by side).
  const VI mixed{0, 4, 4, 13, 20, 20}, unbalanced{0, 1, 30, 30},
      many{0, 3, 9, 10, 10, 18, 19, 25, 33, 34, 36, 41, 41, 49, 52, 57, 60};
  for (const VI& off : {mixed, unbalanced, many}) {
    for (DType dt : {DType::f32, DType::f64}) {
      for (bool tw : {false, true}) {
        CAPTURE(off.size());
        CAPTURE(dtype_name(dt));
        CAPTURE(tw);
        const Tol t = tol(dt);
        const auto [E, R, offsets, x, w, gy] = test::grouped_operands(off, dt, tw);
        const Tensor x64 = to_dtype(x, DType::f64), w64 = to_dtype(w, DType::f64),
                     gy64 = to_dtype(gy, DType::f64);

        std::vector<Tensor> parts;
        for (I e = 0; e < E; ++e)
          parts.push_back(matmul(narrow(x64, 0, off[e], off[e + 1] - off[e]), select(w64, 0, e), false, tw));
        const Tensor y = grouped_matmul(x, w, offsets, tw);
        CHECK(y.dtype() == dt);
        expect_close(y, cat(parts, 0), t.rtol, t.atol);
        // Strided x and w (transposed storage) give the same values.
        const Tensor xt = transpose(contiguous(transpose(x, 0, 1)), 0, 1);
        const Tensor wt = transpose(contiguous(transpose(w, 1, 2)), 1, 2);
        REQUIRE_FALSE(wt.is_contiguous());
        CHECK(grouped_matmul(xt, wt, offsets, tw).to_vector<double>() == y.to_vector<double>());

        const Tensor dw = grouped_matmul_weight_grad(x, gy, offsets, tw);
        CHECK(dw.shape() == w.shape());
        std::vector<Tensor> grads;
        for (I e = 0; e < E; ++e) {
          const Tensor xe = narrow(x64, 0, off[e], off[e + 1] - off[e]);
          const Tensor ge = narrow(gy64, 0, off[e], off[e + 1] - off[e]);
          grads.push_back(tw ? matmul(ge, xe, true, false) : matmul(xe, ge, true, false));
        }
        expect_close(dw, stack(grads, 0), t.rtol, t.atol);
        // Empty groups: exact zeros (fresh memory is not assumed zero).
        for (I e = 0; e < E; ++e) {
          if (off[e + 1] != off[e]) continue;
          const auto v = select(dw, 0, e).to_vector<double>();
          CHECK(std::all_of(v.begin(), v.end(), [](double z) { return z == 0.0; }));
        }
      }
    }
  }
  // A per-group bias: every row of group e gets bias[e] added (unequal groups with empty ones,
  // equal groups), and grouped_row_sums gives its gradient.
  for (const VI& off : {mixed, VI{0, 3, 6, 9}}) {
    for (DType dt : {DType::f32, DType::f64}) {
      CAPTURE(off.size());
      CAPTURE(dtype_name(dt));
      const auto [E, R, offsets, x, w, gy] = test::grouped_operands(off, dt, true);
      const Tensor bias = random_tensor({E, w.size(1)}, dt, 14);
      std::vector<Tensor> rows, sums;
      for (I e = 0; e < E; ++e) {
        rows.push_back(expand(narrow(bias, 0, e, 1), {off[e + 1] - off[e], w.size(1)}));
        sums.push_back(sum(narrow(gy, 0, off[e], off[e + 1] - off[e]), {0}));
      }
      expect_close(grouped_matmul(x, w, offsets, true, bias), add(grouped_matmul(x, w, offsets, true), cat(rows, 0)),
                   tol(dt).rtol, tol(dt).atol);
      expect_close(grouped_row_sums(gy, offsets), stack(sums, 0), tol(dt).rtol, tol(dt).atol);
    }
  }
  CHECK(grouped_matmul(full({2, 0}, 1.0), zeros({1, 0, 3}), ti({0, 2}, {2}), false, full({1, 3}, 5.0))
            .to_vector<float>() == std::vector<float>(6, 5.0f));  // inner dim 0: the bias alone
  CHECK_THROWS_WITH_AS(grouped_matmul(zeros({4, 3}), zeros({2, 3, 5}), ti({0, 2, 4}, {3}), false, zeros({2, 4})),
                       Contains("[grouped_matmul] bias must be [E, b] = [2, 5]"), Error);

  // R == 0, E == 0 and a == 0 (inner dim 0 gives zeros).
  CHECK(grouped_matmul(zeros({0, 3}), zeros({2, 3, 4}), ti({0, 0, 0}, {3}), false).shape() == Shape{0, 4});
  CHECK(grouped_matmul_weight_grad(zeros({0, 3}), zeros({0, 4}), ti({0, 0, 0}, {3}), true).to_vector<float>() ==
        std::vector<float>(24, 0));
  CHECK(grouped_matmul_weight_grad(zeros({0, 3}), zeros({0, 4}), ti({0}, {1}), false).shape() == Shape{0, 3, 4});
  CHECK(grouped_matmul(full({2, 0}, 1.0), zeros({1, 0, 3}), ti({0, 2}, {2}), false).to_vector<float>() ==
        std::vector<float>(6, 0));
}

TEST_CASE("moe rows: dispatch_rows / combine_rows / row_dot argument and index errors") {
  const Tensor x = zeros({6, 4}), s = zeros({6, 2}), row = ti({0, 1, 2, 3, 4, 5, 6, 7, -1, -1, 8, 9}, {6, 2});
  CHECK_THROWS_WITH_AS(dispatch_rows(zeros({6}), row, s, 10), Contains("[dispatch_rows] x must be [T, d], got f32(6"), Error);
  CHECK_THROWS_WITH_AS(dispatch_rows(x, ti(VI(10, 0), {5, 2}), s, 10),
                       Contains("[dispatch_rows] row must be i64 [T, k] with T = 6 (x rows), got i64(5, 2)"), Error);
  CHECK_THROWS_WITH_AS(dispatch_rows(x, ti(VI(6, 0), {6}), s, 10), Contains("[dispatch_rows] row must be i64 [T, k]"), Error);
  CHECK_THROWS_WITH_AS(dispatch_rows(x, s, s, 10), Contains("[dispatch_rows] row must be i64 [T, k] with T = 6 (x rows), got f32(6, 2)"), Error);
  CHECK_THROWS_WITH_AS(dispatch_rows(x, row, zeros({6, 3}), 10), Contains("[dispatch_rows] scale must be [T, k] = (6, 2) like row, got f32(6, 3)"), Error);
  CHECK_THROWS_WITH_AS(dispatch_rows(x, row, zeros({6, 2}, {DType::f64}), 10), Contains("[dispatch_rows] dtype mismatch: f32(6, 4) vs f64(6, 2)"), Error);
  CHECK_THROWS_WITH_AS(dispatch_rows(zeros({6, 4}, {DType::i64}), row, zeros({6, 2}, {DType::i64}), 10),
                       Contains("[dispatch_rows] needs f32 or f64, got i64(6, 4)"), Error);
  CHECK_THROWS_WITH_AS(dispatch_rows(x, row, s, -1), Contains("[dispatch_rows] num_rows must be >= 0, got -1"), Error);
  CHECK_THROWS_WITH_AS(dispatch_rows(x, row, s, 9), Contains("[dispatch_rows] row index 9 out of range [-1, 9)"), Error);
  CHECK_THROWS_WITH_AS(dispatch_rows(x, ti({0, 1, 2, 3, 4, 5, 6, 7, -2, -1, 8, 9}, {6, 2}), s, 10),
                       Contains("[dispatch_rows] row index -2 out of range [-1, 10)"), Error);
  CHECK_THROWS_WITH_AS(dispatch_rows(x, ti({0, 7, 2, 3, 4, 5, 6, 7, -1, -1, 8, 9}, {6, 2}), s, 10),
                       Contains("[dispatch_rows] row index 7 appears twice"), Error);
  CHECK_THROWS_WITH_AS(dispatch_rows(x, row, Tensor{}, 10), Contains("[dispatch_rows] scale tensor is undefined"), Error);

  const Tensor y = zeros({10, 4});
  CHECK_THROWS_WITH_AS(combine_rows(zeros({10, 4, 1}), row, s), Contains("[combine_rows] y must be [R, d], got f32(10, 4, 1)"), Error);
  CHECK_THROWS_WITH_AS(combine_rows(y, ti(VI(6, 0), {6}), s), Contains("[combine_rows] row must be i64 [T, k], got i64(6"), Error);
  CHECK_THROWS_WITH_AS(combine_rows(y, row, zeros({2, 6})), Contains("[combine_rows] weight must be [T, k] = (6, 2) like row, got f32(2, 6)"), Error);
  CHECK_THROWS_WITH_AS(combine_rows(zeros({10, 4}, {DType::f64}), row, s), Contains("[combine_rows] dtype mismatch: f64(10, 4) vs f32(6, 2)"), Error);
  CHECK_THROWS_WITH_AS(combine_rows(zeros({9, 4}), row, s), Contains("[combine_rows] row index 9 out of range [-1, 9)"), Error);
  CHECK_NOTHROW(combine_rows(y, ti(VI(12, 3), {6, 2}), s));  // repeats are fine here

  CHECK_THROWS_WITH_AS(row_dot(zeros({10}), row, x), Contains("[row_dot] a must be [R, d], got f32(10"), Error);
  CHECK_THROWS_WITH_AS(row_dot(y, row, zeros({6, 4, 1})), Contains("[row_dot] b must be [T, d], got f32(6, 4, 1)"), Error);
  CHECK_THROWS_WITH_AS(row_dot(zeros({10, 3}), row, x), Contains("[row_dot] a f32(10, 3) and b f32(6, 4) differ in d"), Error);
  CHECK_THROWS_WITH_AS(row_dot(y, row, zeros({7, 4})), Contains("[row_dot] row must be i64 [T, k] with T = 7 (b rows), got i64(6, 2)"), Error);
  CHECK_THROWS_WITH_AS(row_dot(y, row, zeros({6, 4}, {DType::f64})), Contains("[row_dot] dtype mismatch"), Error);
  CHECK_THROWS_WITH_AS(row_dot(zeros({5, 4}), row, x), Contains("[row_dot] row index 5 out of range [-1, 5)"), Error);

  CHECK_THROWS_WITH_AS(rows_distinct(ti({0, 3}, {2}), 3), Contains("[rows_distinct] row index 3 out of range [-1, 3)"), Error);
  CHECK_THROWS_WITH_AS(rows_distinct(s, 3), Contains("[rows_distinct] row must be i64, got f32(6, 2)"), Error);
}

TEST_CASE("moe rows: grouped_matmul argument and offsets errors") {
  const Tensor x = zeros({6, 3}), w = zeros({2, 3, 4}), wt = zeros({2, 4, 3}), off = ti({0, 2, 6}, {3});
  CHECK_NOTHROW(grouped_matmul(x, w, off, false));
  CHECK_NOTHROW(grouped_matmul(x, wt, off, true));
  CHECK_THROWS_WITH_AS(grouped_matmul(zeros({6}), w, off, false), Contains("[grouped_matmul] x must be [R, a], got f32(6"), Error);
  CHECK_THROWS_WITH_AS(grouped_matmul(x, zeros({3, 4}), off, false), Contains("[grouped_matmul] w must be [E, a, b], got f32(3, 4)"), Error);
  CHECK_THROWS_WITH_AS(grouped_matmul(x, zeros({3, 4}), off, true), Contains("[grouped_matmul] w must be [E, b, a], got f32(3, 4)"), Error);
  CHECK_THROWS_WITH_AS(grouped_matmul(x, wt, off, false),
                       Contains("[grouped_matmul] x f32(6, 3) and w f32(2, 4, 3) differ in the inner dim: 3 vs 4"), Error);
  CHECK_THROWS_WITH_AS(grouped_matmul(x, w, off, true),
                       Contains("[grouped_matmul] x f32(6, 3) and w f32(2, 3, 4) (transposed) differ in the inner dim: 3 vs 4"), Error);
  CHECK_THROWS_WITH_AS(grouped_matmul(x, zeros({2, 3, 4}, {DType::f64}), off, false), Contains("[grouped_matmul] dtype mismatch: f32(6, 3) vs f64(2, 3, 4)"), Error);
  CHECK_THROWS_WITH_AS(grouped_matmul(x, w, from_vector<float>({0, 2, 6}, {3}), false),
                       Contains("[grouped_matmul] offsets must be i64 [E + 1], got f32(3"), Error);
  CHECK_THROWS_WITH_AS(grouped_matmul(x, w, ti({0, 2, 6}, {1, 3}), false), Contains("[grouped_matmul] offsets must be i64 [E + 1], got i64(1, 3)"), Error);
  CHECK_THROWS_WITH_AS(grouped_matmul(x, w, ti({0, 2, 4, 6}, {4}), false),
                       Contains("[grouped_matmul] offsets i64(4,) must have E + 1 = 3 entries for E = 2 expert weights"), Error);
  CHECK_THROWS_WITH_AS(grouped_matmul(x, w, ti({1, 2, 6}, {3}), false), Contains("[grouped_matmul] offsets must start at 0, got 1"), Error);
  CHECK_THROWS_WITH_AS(grouped_matmul(x, zeros({3, 3, 4}), ti({0, 4, 2, 6}, {4}), false),
                       Contains("[grouped_matmul] offsets must be non-decreasing, got 2 after 4 (entries 1 and 2)"), Error);
  CHECK_THROWS_WITH_AS(grouped_matmul(x, w, ti({0, 2, 5}, {3}), false), Contains("[grouped_matmul] offsets must end at R = 6 (x rows), got 5"), Error);
  CHECK_THROWS_WITH_AS(grouped_matmul(x, w, Tensor{}, false), Contains("[grouped_matmul] offsets tensor is undefined"), Error);

  const Tensor gy = zeros({6, 4});
  CHECK(grouped_matmul_weight_grad(x, gy, off, false).shape() == Shape{2, 3, 4});
  CHECK(grouped_matmul_weight_grad(x, gy, off, true).shape() == Shape{2, 4, 3});
  CHECK_THROWS_WITH_AS(grouped_matmul_weight_grad(x, zeros({5, 4}), off, false),
                       Contains("[grouped_matmul_weight_grad] x f32(6, 3) and gy f32(5, 4) differ in R"), Error);
  CHECK_THROWS_WITH_AS(grouped_matmul_weight_grad(x, zeros({6}), off, false),
                       Contains("[grouped_matmul_weight_grad] gy must be [R, b], got f32(6"), Error);
  CHECK_THROWS_WITH_AS(grouped_matmul_weight_grad(x, gy, ti({}, {0}), false),
                       Contains("[grouped_matmul_weight_grad] offsets must be i64 [E + 1], got i64(0"), Error);
  CHECK_THROWS_WITH_AS(grouped_matmul_weight_grad(x, gy, ti({0, 3, 1, 6}, {4}), false),
                       Contains("[grouped_matmul_weight_grad] offsets must be non-decreasing, got 1 after 3"), Error);
  CHECK_THROWS_WITH_AS(grouped_matmul_weight_grad(x, gy, ti({0, 7}, {2}), true),
                       Contains("[grouped_matmul_weight_grad] offsets must end at R = 6 (x rows), got 7"), Error);
  CHECK_THROWS_WITH_AS(grouped_matmul_weight_grad(x, zeros({6, 4}, {DType::f64}), off, false),
                       Contains("[grouped_matmul_weight_grad] dtype mismatch"), Error);
}
