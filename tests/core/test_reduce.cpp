// Reductions: values against hand-computed results, layouts, dtypes, error paths.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "core/ops.h"

using namespace moegrad;
using namespace moegrad::core;

namespace {

const double kInf = std::numeric_limits<double>::infinity();
const double kNaN = std::numeric_limits<double>::quiet_NaN();

template <class T>
void check_values(const Tensor& t, const std::vector<double>& want, double tol = 1e-6) {
  const std::vector<T> got = t.to_vector<T>();
  REQUIRE(got.size() == want.size());
  for (std::size_t i = 0; i < want.size(); ++i) {
    INFO("element " << i << ": got " << static_cast<double>(got[i]) << ", want " << want[i]);
    if (std::isnan(want[i])) {
      CHECK(std::isnan(static_cast<double>(got[i])));
    } else if (std::isinf(want[i])) {
      CHECK(static_cast<double>(got[i]) == want[i]);
    } else {
      CHECK(static_cast<double>(got[i]) == doctest::Approx(want[i]).epsilon(tol));
    }
  }
}

void check_f(const Tensor& t, const std::vector<double>& want, double tol = 1e-6) {
  REQUIRE(t.dtype() == DType::f32);
  check_values<float>(t, want, tol);
}
void check_d(const Tensor& t, const std::vector<double>& want, double tol = 1e-12) {
  REQUIRE(t.dtype() == DType::f64);
  check_values<double>(t, want, tol);
}
void check_i(const Tensor& t, const std::vector<std::int64_t>& want) {
  REQUIRE(t.dtype() == DType::i64);
  CHECK(t.to_vector<std::int64_t>() == want);
}

// [[0, 1, 2], [3, 4, 5]]
Tensor m23() { return from_vector<float>({0, 1, 2, 3, 4, 5}, {2, 3}); }
// 0..23 as (2, 3, 4)
Tensor t234() {
  std::vector<float> v(24);
  for (int i = 0; i < 24; ++i) v[i] = static_cast<float>(i);
  return from_vector<float>(v, {2, 3, 4});
}

}  // namespace

TEST_CASE("reduce: sum over dims, keepdim, negative dims") {
  const Tensor x = m23();
  Tensor all = sum(x);
  CHECK(all.shape() == Shape{});
  check_f(all, {15});
  check_f(sum(x, {0}), {3, 5, 7});
  check_f(sum(x, {1}), {3, 12});
  check_f(sum(x, {-1}), {3, 12});
  Tensor k = sum(x, {1}, true);
  CHECK(k.shape() == Shape{2, 1});
  check_f(k, {3, 12});
  Tensor k2 = sum(x, {}, true);
  CHECK(k2.shape() == Shape{1, 1});
  check_f(k2, {15});

  const Tensor y = t234();
  Tensor s02 = sum(y, {0, 2});
  CHECK(s02.shape() == Shape{3});
  // dim 1 index j: sum over i, k of 12 i + 4 j + k = 4*12 + 8*4j + 2*6 = 60 + 32 j
  check_f(s02, {60, 92, 124});
  Tensor s12 = sum(y, {-1, -2}, true);
  CHECK(s12.shape() == Shape{2, 1, 1});
  check_f(s12, {66, 210});
  Tensor s01 = sum(y, {1, 0});
  CHECK(s01.shape() == Shape{4});
  check_f(s01, {60, 66, 72, 78});
  // Size-1 reduced dims only.
  const Tensor u = from_vector<float>({1, 2, 3, 4, 5, 6}, {2, 1, 3});
  Tensor su = sum(u, {1});
  CHECK(su.shape() == Shape{2, 3});
  check_f(su, {1, 2, 3, 4, 5, 6});
  check_f(amax(transpose(u, 0, 2), {1}, true), {1, 4, 2, 5, 3, 6});
  // Middle dim of a contiguous tensor: [A, R, B] column blocks.
  Tensor s1 = sum(y, {1});
  CHECK(s1.shape() == Shape{2, 4});
  check_f(s1, {12, 15, 18, 21, 48, 51, 54, 57});
}

TEST_CASE("reduce: sum of non-contiguous inputs") {
  const Tensor x = m23();
  const Tensor xt = transpose(x, 0, 1);  // (3, 2): [[0, 3], [1, 4], [2, 5]]
  check_f(sum(xt, {0}), {3, 12});
  check_f(sum(xt, {1}), {3, 5, 7});
  check_f(sum(xt), {15});

  const Tensor s = slice(t234(), 2, 0, 4, 2);  // (2, 3, 2): k in {0, 2}
  check_f(sum(s, {2}), {2, 10, 18, 26, 34, 42});
  check_f(sum(s, {0, 1}), {60, 72});  // sum over i, j of 12i + 4j + k for k = 0, 2

  const Tensor row = from_vector<float>({1, 2, 3}, {1, 3});
  const Tensor e = expand(row, {4, 3});  // stride 0
  check_f(sum(e, {0}), {4, 8, 12});
  check_f(sum(e, {1}), {6, 6, 6, 6});
  check_f(sum(e), {24});

  // permute of a (2, 3, 4) tensor, reduce a mix of dims
  const Tensor p = permute(t234(), {2, 0, 1});  // (4, 2, 3)
  check_f(sum(p, {0, 2}), {66, 210});
  check_f(sum(p, {1}), {12, 20, 28, 14, 22, 30, 16, 24, 32, 18, 26, 34});
}

TEST_CASE("reduce: sum dtypes and empty reductions") {
  const Tensor d = from_vector<double>({1.5, 2.25, -1, 4}, {2, 2});
  check_d(sum(d, {0}), {0.5, 6.25});
  const Tensor i = from_vector<std::int64_t>({1, 2, 3, 4, 5, 6}, {3, 2});
  check_i(sum(i, {0}), {9, 12});
  check_i(sum(i, {1}), {3, 7, 11});
  check_i(sum(i), {21});
  // b8 sums count the true values in i64.
  const Tensor b = gt(m23(), 1.5);
  Tensor sb = sum(b, {1});
  check_i(sb, {1, 3});

  const Tensor z = zeros({2, 0});
  Tensor zs = sum(z, {1});
  CHECK(zs.shape() == Shape{2});
  check_f(zs, {0, 0});
  CHECK(sum(z, {0}).shape() == Shape{0});
  check_f(sum(z), {0});
  Tensor zm = mean(z, {1});
  check_f(zm, {kNaN, kNaN});
}

TEST_CASE("reduce: f32 sums accumulate in double") {
  // 1e8 + many small values: float accumulation would lose them.
  std::vector<float> v(1001, 1.0f);
  v[0] = 1.0e8f;
  Tensor s = sum(from_vector<float>(v));
  CHECK(s.item<double>() == doctest::Approx(1.0e8 + 1000.0).epsilon(1e-9));
}

TEST_CASE("reduce: large sums across threads and layouts") {
  // Large enough to take the parallel paths (row split, column split, column blocks).
  const std::int64_t N = 300, D = 1300;
  std::vector<double> v(static_cast<std::size_t>(N * D));
  for (std::int64_t i = 0; i < N; ++i)
    for (std::int64_t j = 0; j < D; ++j) v[i * D + j] = static_cast<double>((i * 7 + j * 3) % 11);
  const Tensor x = from_vector<double>(v, {N, D});
  std::vector<double> col(D, 0.0), rowsum(N, 0.0);
  double total = 0;
  for (std::int64_t i = 0; i < N; ++i)
    for (std::int64_t j = 0; j < D; ++j) {
      col[j] += v[i * D + j];
      rowsum[i] += v[i * D + j];
      total += v[i * D + j];
    }
  check_d(sum(x, {0}), col);
  check_d(sum(x, {1}), rowsum);
  check_d(sum(x), {total});
  check_d(sum(transpose(x, 0, 1), {1}), col);
  check_d(sum(transpose(x, 0, 1), {0}), rowsum);
  // Few columns, many rows (split over rows of a column reduction).
  const Tensor narrow_cols = reshape(x, {N * D / 4, 4});
  std::vector<double> c4(4, 0.0);
  for (std::size_t k = 0; k < v.size(); ++k) c4[k % 4] += v[k];
  check_d(sum(narrow_cols, {0}), c4);
  // Many column blocks (parallel over blocks).
  const Tensor wide = reshape(x, {30, N * D / 30});
  std::vector<double> cw(static_cast<std::size_t>(N * D / 30), 0.0), mw(cw.size(), -1.0);
  for (std::size_t k = 0; k < v.size(); ++k) {
    cw[k % cw.size()] += v[k];
    mw[k % cw.size()] = std::max(mw[k % cw.size()], v[k]);
  }
  check_d(sum(wide, {0}), cw);
  check_d(amax(wide, {0}), mw);
  // Same input, same result (deterministic).
  CHECK(sum(x).item<double>() == sum(x).item<double>());
}

TEST_CASE("reduce: mean") {
  const Tensor x = m23();
  check_f(mean(x), {2.5});
  check_f(mean(x, {0}), {1.5, 2.5, 3.5});
  Tensor k = mean(x, {-1}, true);
  CHECK(k.shape() == Shape{2, 1});
  check_f(k, {1, 4});
  check_d(mean(from_vector<double>({1, 2, 3, 4}, {2, 2}), {0, 1}), {2.5});
  check_f(mean(transpose(x, 0, 1), {0}), {1, 4});
}

TEST_CASE("reduce: amax, amin and NaN") {
  const Tensor x = from_vector<float>({3, -1, 7, 2, 9, -5}, {2, 3});
  check_f(amax(x), {9});
  check_f(amin(x), {-5});
  check_f(amax(x, {0}), {3, 9, 7});
  check_f(amin(x, {1}), {-1, -5});
  Tensor k = amax(x, {1}, true);
  CHECK(k.shape() == Shape{2, 1});
  check_f(k, {7, 9});
  check_f(amax(transpose(x, 0, 1), {1}), {3, 9, 7});
  const Tensor i = from_vector<std::int64_t>({-4, -9, -2}, {3});
  check_i(amax(i), {-2});
  check_i(amin(i), {-9});
  const Tensor n = from_vector<float>({1, static_cast<float>(kNaN), 3, 4, 5, 6}, {2, 3});
  check_f(amax(n, {1}), {kNaN, 6});
  check_f(amin(n, {1}), {kNaN, 4});
  check_f(amax(n, {0}), {4, kNaN, 6});
  check_f(amax(n), {kNaN});
  const Tensor inf = from_vector<double>({-kInf, -kInf}, {2});
  check_d(amax(inf), {-kInf});
}

TEST_CASE("reduce: max, min, argmax, argmin return the first extreme") {
  const Tensor x = from_vector<float>({1, 5, 5, 0, 2, 2, 2, -1}, {2, 4});
  ValuesIndices r = max(x, 1);
  check_f(r.values, {5, 2});
  check_i(r.indices, {1, 0});
  ValuesIndices m = min(x, 1);
  check_f(m.values, {0, -1});
  check_i(m.indices, {3, 3});
  check_i(argmax(x, -1), {1, 0});
  check_i(argmin(x, 0), {0, 1, 1, 1});
  ValuesIndices c = max(x, 0, true);
  CHECK(c.values.shape() == Shape{1, 4});
  CHECK(c.indices.shape() == Shape{1, 4});
  check_f(c.values, {2, 5, 5, 0});
  check_i(c.indices, {1, 0, 0, 0});
  // Ties along a column: first index.
  const Tensor t = from_vector<double>({4, 1, 4, 1, 4, 1}, {3, 2});
  check_i(argmax(t, 0), {0, 0});
  check_i(argmin(t, 0), {0, 0});
  // Non-contiguous input.
  check_i(argmax(transpose(x, 0, 1), 0), {1, 0});
  // i64.
  const Tensor i = from_vector<std::int64_t>({3, 8, 8, -2}, {4});
  ValuesIndices ri = max(i, 0);
  check_i(ri.values, {8});
  check_i(ri.indices, {1});
  CHECK(ri.values.shape() == Shape{});
  // NaN wins, first NaN index.
  const Tensor n = from_vector<float>({1, static_cast<float>(kNaN), 9, static_cast<float>(kNaN)}, {4});
  ValuesIndices rn = max(n, 0);
  check_f(rn.values, {kNaN});
  check_i(rn.indices, {1});
  check_i(argmin(n, 0), {1});
  // 3-d, middle dim.
  check_i(argmax(t234(), 1), {2, 2, 2, 2, 2, 2, 2, 2});
  check_i(argmin(t234(), -1), {0, 0, 0, 0, 0, 0});
}

TEST_CASE("reduce: logsumexp") {
  const Tensor x = from_vector<double>({0, 0, 1, 2, 3, -kInf}, {2, 3});
  check_d(logsumexp(x, {1}), {std::log(1 + 1 + std::exp(1.0)), std::log(std::exp(2.0) + std::exp(3.0))});
  check_d(logsumexp(x, {0}), {std::log(1 + std::exp(2.0)), std::log(1 + std::exp(3.0)), 1.0});
  const Tensor big = from_vector<float>({1000, 1000, -1000, -1000}, {2, 2});
  check_f(logsumexp(big, {1}), {1000 + std::log(2.0), -1000 + std::log(2.0)});
  const Tensor ninf = from_vector<float>({-static_cast<float>(kInf), -static_cast<float>(kInf), 1,
                                          static_cast<float>(kInf)},
                                         {2, 2});
  check_f(logsumexp(ninf, {1}), {-kInf, kInf});
  Tensor all = logsumexp(from_vector<double>({1, 2, 3, 4}, {2, 2}), {}, true);
  CHECK(all.shape() == Shape{1, 1});
  check_d(all, {std::log(std::exp(1.0) + std::exp(2.0) + std::exp(3.0) + std::exp(4.0))});
  check_d(logsumexp(transpose(x, 0, 1), {0}),
          {std::log(2 + std::exp(1.0)), std::log(std::exp(2.0) + std::exp(3.0))});
}

TEST_CASE("reduce: norm") {
  const Tensor x = from_vector<float>({3, -4, 0, 1, 2, -2}, {2, 3});
  check_f(norm(x, 2.0, {1}), {5, 3});
  check_f(norm(x), {std::sqrt(34.0)});
  check_f(norm(x, 1.0, {1}), {7, 5});
  check_f(norm(x, 3.0, {1}), {std::cbrt(27.0 + 64.0), std::cbrt(1.0 + 8.0 + 8.0)});
  check_f(norm(x, kInf, {1}), {4, 2});
  check_f(norm(x, 2.0, {0}, true), {std::sqrt(10.0), std::sqrt(20.0), 2});
  check_d(norm(from_vector<double>({1, 1, 1, 1}, {4})), {2});
}

TEST_CASE("reduce: softmax and log_softmax") {
  const Tensor x = from_vector<float>({1, 2, 3, 1, 1, 1}, {2, 3});
  const double e1 = std::exp(1.0), e2 = std::exp(2.0), e3 = std::exp(3.0), s = e1 + e2 + e3;
  Tensor y = softmax(x, 1);
  check_f(y, {e1 / s, e2 / s, e3 / s, 1.0 / 3, 1.0 / 3, 1.0 / 3});
  check_f(sum(y, {1}), {1, 1});
  check_f(log_softmax(x, -1),
          {1 - std::log(s), 2 - std::log(s), 3 - std::log(s), -std::log(3.0), -std::log(3.0),
           -std::log(3.0)});
  // Over dim 0 (column path).
  Tensor y0 = softmax(x, 0);
  check_f(sum(y0, {0}), {1, 1, 1});
  check_f(y0, {0.5, 1 / (1 + std::exp(-1.0)), 1 / (1 + std::exp(-2.0)), 0.5,
               1 / (1 + std::exp(1.0)), 1 / (1 + std::exp(2.0))});
  check_f(log_softmax(x, 0), {std::log(0.5), -std::log(1 + std::exp(-1.0)),
                              -std::log(1 + std::exp(-2.0)), std::log(0.5),
                              -std::log(1 + std::exp(1.0)), -std::log(1 + std::exp(2.0))});
  // Large magnitudes stay finite.
  const Tensor big = from_vector<float>({1000, 1001, -1000, -1001}, {2, 2});
  const double a = 1 / (1 + std::exp(1.0));
  check_f(softmax(big, 1), {a, 1 - a, 1 - a, a});
  check_f(log_softmax(big, 1), {std::log(a), std::log(1 - a), std::log(1 - a), std::log(a)});
  // Non-contiguous input, f64.
  const Tensor xd = from_vector<double>({1, 1, 2, 1, 3, 1}, {3, 2});  // transpose of x
  Tensor yd = softmax(transpose(xd, 0, 1), 1);
  check_d(yd, {e1 / s, e2 / s, e3 / s, 1.0 / 3, 1.0 / 3, 1.0 / 3});
  // 3-d middle dim.
  Tensor y3 = softmax(t234(), 1);
  check_f(sum(y3, {1}), std::vector<double>(8, 1.0));
}

TEST_CASE("reduce: f32 softmax family matches f64 over a wide range") {
  // Rows spanning about 120 in magnitude (exps down to the subnormal range) and large enough
  // for the parallel paths; f32 results must match the f64 ones to float accuracy.
  const std::int64_t rows = 64, cols = 1000;
  std::vector<double> v(static_cast<std::size_t>(rows * cols));
  for (std::size_t i = 0; i < v.size(); ++i)
    v[i] = static_cast<double>(static_cast<float>(std::fmod(static_cast<double>(i) * 0.7071, 121.0) - 110.0));
  v[5] = kInf * -1;  // a masked entry
  const Tensor xd = from_vector<double>(v, {rows, cols});
  std::vector<float> vf(v.begin(), v.end());
  const Tensor xf = from_vector<float>(vf, {rows, cols});
  for (std::int64_t dim : {1, 0}) {
    INFO("dim " << dim);
    const auto yd = softmax(xd, dim).to_vector<double>();
    const auto yf = softmax(xf, dim).to_vector<float>();
    const auto ld = log_softmax(xd, dim).to_vector<double>();
    const auto lf = log_softmax(xf, dim).to_vector<float>();
    double max_rel = 0, max_abs = 0, max_log = 0;
    for (std::size_t i = 0; i < yd.size(); ++i) {
      if (yd[i] > 1e-36) max_rel = std::max(max_rel, std::fabs(yf[i] - yd[i]) / yd[i]);
      else max_abs = std::max(max_abs, std::fabs(yf[i] - yd[i]));
      if (std::isfinite(ld[i])) max_log = std::max(max_log, std::fabs(lf[i] - ld[i]) / (1 + std::fabs(ld[i])));
      else CHECK(lf[i] == -std::numeric_limits<float>::infinity());
    }
    CHECK(max_rel < 1e-5);
    CHECK(max_abs < 1e-40);  // subnormal floats
    CHECK(max_log < 1e-6);
    const auto sd = logsumexp(xd, {dim}).to_vector<double>();
    const auto sf = logsumexp(xf, {dim}).to_vector<float>();
    for (std::size_t i = 0; i < sd.size(); ++i)
      CHECK(sf[i] == doctest::Approx(sd[i]).epsilon(1e-6));
  }
  // exp at the edges of the float range (via 2-element softmax rows [0, t]).
  const Tensor edge = from_vector<float>({0, 88.5f, 0, -103.5f, 0, -120, 0, 0}, {4, 2});
  check_f(softmax(edge, 1), {std::exp(-88.5), 1, 1, std::exp(-103.5), 1, 0, 0.5, 0.5}, 1e-5);
}

TEST_CASE("reduce: softmax backward helpers") {
  const Tensor x = from_vector<double>({0.5, -1, 2, 0.1, 0.2, 0.3}, {2, 3});
  const Tensor gy = from_vector<double>({1, 2, 3, -1, 0, 4}, {2, 3});
  for (std::int64_t dim : {0, 1}) {
    const Tensor y = softmax(x, dim);
    const Tensor ly = log_softmax(x, dim);
    const auto yv = y.to_vector<double>(), gv = gy.to_vector<double>();
    std::vector<double> want(6), want_log(6);
    for (int i = 0; i < 6; ++i) {
      // Indices of the line through element i along dim.
      std::vector<int> line;
      if (dim == 1) line = {i / 3 * 3, i / 3 * 3 + 1, i / 3 * 3 + 2};
      else line = {i % 3, i % 3 + 3};
      double dot = 0, gs = 0;
      for (int k : line) {
        dot += gv[k] * yv[k];
        gs += gv[k];
      }
      want[i] = yv[i] * (gv[i] - dot);
      want_log[i] = gv[i] - yv[i] * gs;
    }
    check_d(softmax_backward(gy, y, dim), want);
    check_d(log_softmax_backward(gy, ly, dim), want_log);
  }
  // f32 and a non-contiguous gradient.
  const Tensor xf = from_vector<float>({1, 2, 3, 4}, {2, 2});
  const Tensor yf = softmax(xf, 1);
  const Tensor gt_ = transpose(from_vector<float>({1, 0, 0, 1}, {2, 2}), 0, 1);
  Tensor g = softmax_backward(gt_, yf, 1);
  const double p = 1 / (1 + std::exp(1.0));  // softmax([1, 2])[0]
  check_f(g, {p * (1 - p), -p * (1 - p), -p * (1 - p), p * (1 - p)});
}

TEST_CASE("reduce: cumsum variants") {
  const Tensor x = from_vector<float>({1, 2, 3, 4, 5, 6}, {2, 3});
  check_f(cumsum(x, 1), {1, 3, 6, 4, 9, 15});
  check_f(cumsum(x, 1, true), {0, 1, 3, 0, 4, 9});
  check_f(cumsum(x, 1, false, true), {6, 5, 3, 15, 11, 6});
  check_f(cumsum(x, -1, true, true), {5, 3, 0, 11, 6, 0});
  check_f(cumsum(x, 0), {1, 2, 3, 5, 7, 9});
  check_f(cumsum(x, 0, true), {0, 0, 0, 1, 2, 3});
  check_f(cumsum(x, 0, false, true), {5, 7, 9, 4, 5, 6});
  check_f(cumsum(x, 0, true, true), {4, 5, 6, 0, 0, 0});
  check_f(cumsum(transpose(x, 0, 1), 1), {1, 5, 2, 7, 3, 9});
  check_i(cumsum(from_vector<std::int64_t>({3, -1, 2}, {3}), 0), {3, 2, 4});
  check_d(cumsum(from_vector<double>({0.5, 0.25}, {2}), 0, true), {0, 0.5});
  Tensor cb = cumsum(gt(x, 2.5), 1);
  check_i(cb, {0, 0, 1, 1, 2, 3});
}

TEST_CASE("reduce: sum_to_shape") {
  const Tensor x = t234();
  Tensor same = sum_to_shape(x, {2, 3, 4});
  CHECK(same.storage() == x.storage());  // no copy
  Tensor a = sum_to_shape(x, {3, 4});
  CHECK(a.shape() == Shape{3, 4});
  check_f(a, {12, 14, 16, 18, 20, 22, 24, 26, 28, 30, 32, 34});
  Tensor b = sum_to_shape(x, {3, 1});
  CHECK(b.shape() == Shape{3, 1});
  check_f(b, {60, 92, 124});
  Tensor c = sum_to_shape(x, {2, 1, 4});
  CHECK(c.shape() == Shape{2, 1, 4});
  check_f(c, {12, 15, 18, 21, 48, 51, 54, 57});
  Tensor d = sum_to_shape(x, {});
  CHECK(d.shape() == Shape{});
  check_f(d, {276});
  Tensor e = sum_to_shape(x, {1, 1, 1});
  CHECK(e.shape() == Shape{1, 1, 1});
  check_f(e, {276});
  Tensor f = sum_to_shape(transpose(x, 1, 2), {4, 1});
  check_f(f, {60, 66, 72, 78});
  CHECK_THROWS_WITH_AS(sum_to_shape(x, {2, 4}), doctest::Contains("[sum_to_shape]"), Error);
  CHECK_THROWS_WITH_AS(sum_to_shape(x, {5, 2, 3, 4}), doctest::Contains("[sum_to_shape]"), Error);
  CHECK_THROWS_WITH_AS(sum_to_shape(x, {3, 2}), doctest::Contains("(2, 3, 4)"), Error);
}

TEST_CASE("reduce: 0-d inputs") {
  const Tensor s = scalar_tensor(2.5);
  check_f(sum(s), {2.5});
  check_f(mean(s), {2.5});
  check_f(amax(s), {2.5});
  check_f(softmax(s, 0), {1});
  ValuesIndices r = max(s, -1);
  check_f(r.values, {2.5});
  check_i(r.indices, {0});
}

TEST_CASE("reduce: error paths") {
  const Tensor x = m23();
  CHECK_THROWS_WITH_AS(sum(x, {2}), doctest::Contains("[sum]"), Error);
  CHECK_THROWS_WITH_AS(sum(x, {-3}), doctest::Contains("(2, 3)"), Error);
  CHECK_THROWS_WITH_AS(mean(x, {5}), doctest::Contains("[mean]"), Error);
  CHECK_THROWS_WITH_AS(amax(x, {2}), doctest::Contains("[amax]"), Error);
  CHECK_THROWS_WITH_AS(max(x, 2), doctest::Contains("[max]"), Error);
  CHECK_THROWS_WITH_AS(argmin(x, -3), doctest::Contains("[argmin]"), Error);
  CHECK_THROWS_WITH_AS(softmax(x, 2), doctest::Contains("[softmax]"), Error);
  CHECK_THROWS_WITH_AS(cumsum(x, 3), doctest::Contains("[cumsum]"), Error);
  CHECK_THROWS_WITH_AS(sum(Tensor{}), doctest::Contains("[sum]"), Error);

  const Tensor i = from_vector<std::int64_t>({1, 2}, {2});
  CHECK_THROWS_WITH_AS(mean(i), doctest::Contains("[mean]"), Error);
  CHECK_THROWS_WITH_AS(softmax(i, 0), doctest::Contains("[softmax]"), Error);
  CHECK_THROWS_WITH_AS(log_softmax(i, 0), doctest::Contains("[log_softmax]"), Error);
  CHECK_THROWS_WITH_AS(logsumexp(i, {0}), doctest::Contains("[logsumexp]"), Error);
  CHECK_THROWS_WITH_AS(norm(i), doctest::Contains("[norm]"), Error);
  CHECK_THROWS_WITH_AS(amax(gt(x, 1.0)), doctest::Contains("[amax]"), Error);
  CHECK_THROWS_WITH_AS(norm(x, 0.0), doctest::Contains("[norm]"), Error);
  CHECK_THROWS_WITH_AS(norm(x, -1.0), doctest::Contains("p must be > 0"), Error);

  const Tensor z = zeros({2, 0});
  CHECK_THROWS_WITH_AS(amax(z, {1}), doctest::Contains("empty"), Error);
  CHECK_THROWS_WITH_AS(amax(z), doctest::Contains("[amax]"), Error);
  CHECK_THROWS_WITH_AS(amin(z, {1}), doctest::Contains("[amin]"), Error);
  CHECK_THROWS_WITH_AS(max(z, 1), doctest::Contains("[max]"), Error);
  CHECK_THROWS_WITH_AS(argmax(z, 1), doctest::Contains("empty"), Error);
  CHECK(amax(z, {0}).shape() == Shape{0});  // reducing a non-empty dim of an empty tensor

  const Tensor y = softmax(x, 1);
  CHECK_THROWS_WITH_AS(softmax_backward(from_vector<float>({1, 2, 3}, {3}), y, 1),
                       doctest::Contains("[softmax_backward]"), Error);
  CHECK_THROWS_WITH_AS(softmax_backward(from_vector<double>({1, 2, 3, 4, 5, 6}, {2, 3}), y, 1),
                       doctest::Contains("[softmax_backward]"), Error);
  CHECK_THROWS_WITH_AS(log_softmax_backward(y, y, 2), doctest::Contains("[log_softmax_backward]"),
                       Error);
}

TEST_CASE("all_finite: Inf and NaN anywhere, finite values whose sum overflows, views, empty and integer tensors") {
  const float big = std::numeric_limits<float>::max();
  CHECK(all_finite(full({1000}, big)));  // the sum overflows; every element is finite
  CHECK(all_finite(full({1000}, -big, {DType::f64})));
  for (const double bad : {INFINITY, -INFINITY, NAN})
    for (const DType dt : {DType::f32, DType::f64}) {
      Tensor x = zeros({7, 5}, {dt});
      fill_(select(select(x, 0, 6), 0, 4), bad);  // the last element
      CHECK_FALSE(all_finite(x));
      CHECK_FALSE(all_finite(transpose(x, 0, 1)));
      CHECK(all_finite(narrow(x, 0, 0, 6)));  // a view without it
    }
  CHECK(all_finite(Tensor{}));
  CHECK(all_finite(zeros({0, 3})));
  CHECK(all_finite(full({3}, 5.0, {DType::i64})));
}
