// Indexing, selection and joining: hand-computed values, non-contiguous inputs, error paths.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <numeric>
#include <vector>

#include "core/ops.h"

using namespace moegrad;
using namespace moegrad::core;
using I = std::int64_t;
using VF = std::vector<float>;
using VI = std::vector<I>;

namespace {

Tensor tf(const VF& v, const Shape& s) { return from_vector<float>(v, s); }
Tensor ti(const VI& v, const Shape& s) { return from_vector<I>(v, s); }
Tensor ti(const VI& v) { return from_vector<I>(v, {static_cast<I>(v.size())}); }
VF vf(const Tensor& t) { return t.to_vector<float>(); }
VI vi(const Tensor& t) { return t.to_vector<I>(); }

}  // namespace

TEST_CASE("indexing: topk largest, ties lowest index first") {
  Tensor x = tf({1, 3, 2, 3, 5, 4, 4, 0}, {2, 4});
  auto r = topk(x, 2);
  CHECK(r.values.shape() == Shape{2, 2});
  CHECK(r.indices.dtype() == DType::i64);
  CHECK(vf(r.values) == VF{3, 3, 5, 4});
  CHECK(vi(r.indices) == VI{1, 3, 0, 1});

  auto s = topk(x, 2, -1, /*largest=*/false);
  CHECK(vf(s.values) == VF{1, 2, 0, 4});
  CHECK(vi(s.indices) == VI{0, 2, 3, 1});

  auto n3 = topk(x, 3, 1);  // k = size - 1 (selection path)
  CHECK(vf(n3.values) == VF{3, 3, 2, 5, 4, 4});
  CHECK(vi(n3.indices) == VI{1, 3, 2, 0, 1, 2});

  auto all = topk(x, 4, 1);  // k = size (full sort path)
  CHECK(vf(all.values) == VF{3, 3, 2, 1, 5, 4, 4, 0});
  CHECK(vi(all.indices) == VI{1, 3, 2, 0, 0, 1, 2, 3});
  auto all_min = topk(x, 4, 1, false);
  CHECK(vf(all_min.values) == VF{1, 2, 3, 3, 0, 4, 4, 5});
  CHECK(vi(all_min.indices) == VI{0, 2, 1, 3, 3, 1, 2, 0});

  auto none = topk(x, 0, 1);
  CHECK(none.values.shape() == Shape{2, 0});
}

TEST_CASE("indexing: topk along dim 0, negative dim, non-contiguous, i64") {
  Tensor x = tf({1, 3, 2, 3, 5, 4, 4, 0}, {2, 4});
  auto r = topk(x, 1, 0);  // per column
  CHECK(r.values.shape() == Shape{1, 4});
  CHECK(vf(r.values) == VF{5, 4, 4, 3});
  CHECK(vi(r.indices) == VI{1, 1, 1, 0});
  auto r2 = topk(x, 1, -2);
  CHECK(vi(r2.indices) == VI{1, 1, 1, 0});

  Tensor xt = transpose(x, 0, 1);  // (4, 2), rows are columns of x
  REQUIRE_FALSE(xt.is_contiguous());
  auto t = topk(xt, 2, 0);  // along the original rows
  CHECK(vf(t.values) == VF{3, 5, 3, 4});
  CHECK(vi(t.indices) == VI{1, 0, 3, 1});

  Tensor xi = ti({7, -2, 7, 9, 0}, {5});
  auto q = topk(xi, 3);
  CHECK(vi(q.values) == VI{9, 7, 7});
  CHECK(vi(q.indices) == VI{3, 0, 2});
}

TEST_CASE("indexing: topk NaN ranks above everything") {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  Tensor x = tf({1, nan, 3, nan}, {4});
  auto r = topk(x, 3);
  VF v = vf(r.values);
  CHECK(std::isnan(v[0]));
  CHECK(std::isnan(v[1]));
  CHECK(v[2] == 3);
  CHECK(vi(r.indices) == VI{1, 3, 2});
  auto s = topk(x, 2, 0, false);
  CHECK(vf(s.values) == VF{1, 3});
  CHECK(vi(s.indices) == VI{0, 2});
}

TEST_CASE("indexing: topk matches a stable sort (large k and MoE-sized rows)") {
  // Large k (> insertion threshold), with many ties.
  const I n = 40;
  VF vals(n);
  for (I j = 0; j < n; ++j) vals[j] = static_cast<float>((j * 7) % 11);
  Tensor x = tf(vals, {1, n});
  for (bool largest : {true, false}) {
    for (I k : {I{17}, I{25}, n}) {
      VI order(n);
      std::iota(order.begin(), order.end(), 0);
      std::stable_sort(order.begin(), order.end(), [&](I a, I b) {
        return largest ? vals[a] > vals[b] : vals[a] < vals[b];
      });
      auto r = topk(x, k, 1, largest);
      CHECK(vi(r.indices) == VI(order.begin(), order.begin() + k));
    }
  }
  // Many short rows: the parallel path, k = 2 of 8.
  const I rows = 20000, e = 8;
  VF big(rows * e);
  for (I i = 0; i < rows * e; ++i) big[i] = static_cast<float>((i * 2654435761LL) % 13);
  auto r = topk(tf(big, {rows, e}), 2);
  VI idx = vi(r.indices);
  VF got = vf(r.values);
  bool ok = true;
  for (I row = 0; row < rows && ok; ++row) {
    VI order(e);
    std::iota(order.begin(), order.end(), 0);
    const float* p = big.data() + row * e;
    std::stable_sort(order.begin(), order.end(), [&](I a, I b) { return p[a] > p[b]; });
    ok = idx[row * 2] == order[0] && idx[row * 2 + 1] == order[1] &&
         got[row * 2] == p[order[0]] && got[row * 2 + 1] == p[order[1]];
  }
  CHECK(ok);
}

TEST_CASE("indexing: topk errors") {
  Tensor x = tf({1, 2, 3}, {3});
  CHECK_THROWS_WITH_AS(topk(x, 4), doctest::Contains("[topk]"), moegrad::Error);
  CHECK_THROWS_WITH_AS(topk(x, -1), doctest::Contains("[topk]"), moegrad::Error);
  CHECK_THROWS_WITH_AS(topk(x, 1, 1), doctest::Contains("[topk]"), moegrad::Error);
}

TEST_CASE("indexing: one_hot") {
  Tensor idx = ti({0, 2, 1, 0}, {2, 2});
  Tensor o = one_hot(idx, 3);
  CHECK(o.shape() == Shape{2, 2, 3});
  CHECK(o.dtype() == DType::i64);
  CHECK(vi(o) == VI{1, 0, 0, 0, 0, 1, 0, 1, 0, 1, 0, 0});
  Tensor of = one_hot(transpose(idx, 0, 1), 3, DType::f32);  // [[0,1],[2,0]]
  CHECK(vf(of) == VF{1, 0, 0, 0, 1, 0, 0, 0, 1, 1, 0, 0});

  CHECK_THROWS_WITH_AS(one_hot(ti({0, 3}), 3), doctest::Contains("[one_hot] class index 3"),
                       moegrad::Error);
  CHECK_THROWS_WITH_AS(one_hot(ti({-1}), 3), doctest::Contains("-1"), moegrad::Error);
  CHECK_THROWS_WITH_AS(one_hot(tf({0}, {1}), 3), doctest::Contains("[one_hot]"),
                       moegrad::Error);
}

TEST_CASE("indexing: gather") {
  Tensor x = tf({1, 2, 3, 4, 5, 6}, {2, 3});
  CHECK(vf(gather(x, 1, ti({2, 0, 1, 1}, {2, 2}))) == VF{3, 1, 5, 5});
  CHECK(vf(gather(x, -1, ti({2, 0, 1, 1}, {2, 2}))) == VF{3, 1, 5, 5});
  Tensor g0 = gather(x, 0, ti({1, 0, 1}, {1, 3}));
  CHECK(g0.shape() == Shape{1, 3});
  CHECK(vf(g0) == VF{4, 2, 6});
  // index smaller than x in the other dim
  CHECK(vf(gather(x, 1, ti({1}, {1, 1}))) == VF{2});

  // Non-contiguous input and index.
  Tensor xt = transpose(x, 0, 1);  // [[1,4],[2,5],[3,6]]
  CHECK(vf(gather(xt, 1, ti({1, 0, 0}, {3, 1}))) == VF{4, 2, 3});
  Tensor it = transpose(ti({1, 0, 0, 0, 1, 1}, {2, 3}), 0, 1);  // [[1,0],[0,1],[0,1]]
  CHECK(vf(gather(xt, 1, it)) == VF{4, 1, 2, 5, 3, 6});
  // Expanded (stride-0) input.
  Tensor xe = expand(tf({10, 20, 30}, {1, 3}), {2, 3});
  CHECK(vf(gather(xe, 1, ti({2, 1}, {2, 1}))) == VF{30, 20});

  // Other dtypes move as they are.
  Tensor xi = ti({5, 6, 7}, {3});
  CHECK(vi(gather(xi, 0, ti({2, 2, 0}))) == VI{7, 7, 5});
}

TEST_CASE("indexing: gather errors") {
  Tensor x = tf({1, 2, 3, 4, 5, 6, 7, 8}, {2, 4});
  CHECK_THROWS_WITH_AS(gather(x, 1, ti({0, 7}, {1, 2})),
                       "[gather] index 7 out of range for dim 1 of size 4", moegrad::Error);
  CHECK_THROWS_WITH_AS(gather(x, 1, ti({-1}, {1, 1})), doctest::Contains("index -1"),
                       moegrad::Error);
  CHECK_THROWS_WITH_AS(gather(x, 1, tf({0}, {1, 1})), doctest::Contains("[gather]"),
                       moegrad::Error);
  CHECK_THROWS_WITH_AS(gather(x, 1, ti({0, 0, 0}, {3, 1})), doctest::Contains("[gather]"),
                       moegrad::Error);
  CHECK_THROWS_WITH_AS(gather(x, 1, ti({0})), doctest::Contains("[gather]"), moegrad::Error);
  CHECK_THROWS_WITH_AS(gather(x, 2, ti({0}, {1, 1})), doctest::Contains("[gather]"),
                       moegrad::Error);
}

TEST_CASE("indexing: scatter and scatter_add") {
  Tensor x = zeros({2, 4});
  Tensor index = ti({1, 3, 0, 0}, {2, 2});
  Tensor src = tf({10, 20, 30, 40}, {2, 2});
  // Repeated targets: scatter keeps the last write (index order), scatter_add accumulates.
  CHECK(vf(scatter(x, 1, index, src)) == VF{0, 10, 0, 20, 40, 0, 0, 0});
  CHECK(vf(scatter_add(x, 1, index, src)) == VF{0, 10, 0, 20, 70, 0, 0, 0});
  CHECK(vf(scatter_add(x, -1, index, src)) == VF{0, 10, 0, 20, 70, 0, 0, 0});
  CHECK(vf(x) == VF(8, 0.0f));  // x untouched

  // dim 0, src larger than index.
  Tensor y = ones({3, 2});
  Tensor s0 = tf({1, 2, 3, 4, 9, 9}, {3, 2});
  CHECK(vf(scatter_add(y, 0, ti({0, 1, 0, 0}, {2, 2}), s0)) == VF{5, 5, 1, 3, 1, 1});
  CHECK(vf(scatter(y, 0, ti({2, 1}, {1, 2}), s0)) == VF{1, 1, 1, 2, 1, 1});

  // Accumulation happens in index order: ((0 + 1e8) - 1e8) + 1 = 1 in f32.
  Tensor acc = scatter_add(zeros({1}), 0, ti({0, 0, 0}), tf({1e8f, -1e8f, 1}, {3}));
  CHECK(vf(acc) == VF{1});

  // Non-contiguous x and src.
  Tensor xt = transpose(tf({1, 2, 3, 4, 5, 6}, {2, 3}), 0, 1);  // [[1,4],[2,5],[3,6]]
  Tensor st = transpose(tf({10, 20, 30, 40, 50, 60}, {2, 3}), 0, 1);  // [[10,40],[20,50],[30,60]]
  CHECK(vf(scatter_add(xt, 1, ti({1, 1, 0}, {3, 1}), st)) == VF{1, 14, 2, 25, 33, 6});

  // i64 data
  CHECK(vi(scatter_add(ti({1, 1}), 0, ti({1, 1, 0}), ti({5, 6, 7}))) == VI{8, 12});
}

TEST_CASE("indexing: scatter errors") {
  Tensor x = zeros({3, 2});
  CHECK_THROWS_WITH_AS(scatter_add(x, 0, ti({3}, {1, 1}), ones({1, 1})),
                       "[scatter_add] index 3 out of range for dim 0 of size 3", moegrad::Error);
  CHECK_THROWS_WITH_AS(scatter(x, 0, tf({0}, {1, 1}), ones({1, 1})),
                       doctest::Contains("[scatter]"), moegrad::Error);
  CHECK_THROWS_WITH_AS(scatter(x, 0, ti({0}, {1, 1}), ones({1, 1}, {DType::f64})),
                       doctest::Contains("[scatter]"), moegrad::Error);
  CHECK_THROWS_WITH_AS(scatter_add(x, 0, ti({0, 0}, {1, 2}), ones({1, 1})),
                       doctest::Contains("[scatter_add]"), moegrad::Error);
}

TEST_CASE("indexing: index_select") {
  Tensor x = tf({1, 2, 3, 4, 5, 6}, {3, 2});
  Tensor r = index_select(x, 0, ti({2, 0, 2}));
  CHECK(r.shape() == Shape{3, 2});
  CHECK(vf(r) == VF{5, 6, 1, 2, 5, 6});
  Tensor c = index_select(x, -1, ti({1}));
  CHECK(c.shape() == Shape{3, 1});
  CHECK(vf(c) == VF{2, 4, 6});
  Tensor xt = transpose(x, 0, 1);  // [[1,3,5],[2,4,6]]
  CHECK(vf(index_select(xt, 1, ti({2, 1, 1}))) == VF{5, 3, 3, 6, 4, 4});
  // Strided index.
  Tensor idx = slice(ti({2, 9, 0, 9}), 0, 0, 4, 2);  // [2, 0]
  CHECK(vf(index_select(x, 0, idx)) == VF{5, 6, 1, 2});
  CHECK(index_select(x, 0, ti(VI{})).shape() == Shape{0, 2});

  CHECK_THROWS_WITH_AS(index_select(x, 0, ti({3})),
                       "[index_select] index 3 out of range for dim 0 of size 3", moegrad::Error);
  CHECK_THROWS_WITH_AS(index_select(x, 0, tf({0}, {1})), doctest::Contains("[index_select]"),
                       moegrad::Error);
  CHECK_THROWS_WITH_AS(index_select(x, 0, ti({0, 0}, {1, 2})),
                       doctest::Contains("[index_select]"), moegrad::Error);
}

TEST_CASE("indexing: index_add") {
  Tensor x = zeros({3, 2});
  Tensor src = tf({1, 2, 3, 4, 5, 6}, {3, 2});
  CHECK(vf(index_add(x, 0, ti({0, 2, 0}), src)) == VF{6, 8, 0, 0, 3, 4});
  CHECK(vf(x) == VF(6, 0.0f));
  Tensor y = ones({2, 3});
  Tensor s1 = tf({1, 2, 3, 4}, {2, 2});
  CHECK(vf(index_add(y, -1, ti({2, 2}), s1)) == VF{1, 1, 4, 1, 1, 8});
  // Non-contiguous x and src.
  Tensor xt = transpose(tf({1, 2, 3, 4, 5, 6}, {2, 3}), 0, 1);  // [[1,4],[2,5],[3,6]]
  Tensor st = transpose(tf({10, 20, 30}, {1, 3}), 0, 1);       // [[10],[20],[30]]
  CHECK(vf(index_add(xt, 1, ti({1}), st)) == VF{1, 14, 2, 25, 3, 36});

  CHECK_THROWS_WITH_AS(index_add(x, 0, ti({5}), ones({1, 2})),
                       "[index_add] index 5 out of range for dim 0 of size 3", moegrad::Error);
  CHECK_THROWS_WITH_AS(index_add(x, 0, ti({0}), ones({1, 3})), doctest::Contains("[index_add]"),
                       moegrad::Error);
  CHECK_THROWS_WITH_AS(index_add(x, 0, tf({0}, {1}), ones({1, 2})),
                       doctest::Contains("[index_add]"), moegrad::Error);
}

TEST_CASE("indexing: cat") {
  Tensor a = tf({1, 2, 3, 4}, {2, 2});
  Tensor b = tf({5, 6}, {1, 2});
  Tensor c0 = cat({a, b}, 0);
  CHECK(c0.shape() == Shape{3, 2});
  CHECK(vf(c0) == VF{1, 2, 3, 4, 5, 6});
  Tensor c1 = cat({a, transpose(b, 0, 1), a}, -1);  // (2,2) + (2,1) + (2,2)
  CHECK(c1.shape() == Shape{2, 5});
  CHECK(vf(c1) == VF{1, 2, 5, 1, 2, 3, 4, 6, 3, 4});
  CHECK(vf(cat({transpose(a, 0, 1)}, 0)) == VF{1, 3, 2, 4});
  CHECK(vf(cat({a, zeros({0, 2})}, 0)) == VF{1, 2, 3, 4});

  CHECK_THROWS_WITH_AS(cat({a, tf({1, 2, 3}, {1, 3})}, 0),
                       doctest::Contains("[cat] sizes must match except in dim 0, got f32(2, 2), "
                                         "f32(1, 3)"),
                       moegrad::Error);
  CHECK_THROWS_WITH_AS(cat({a, ones({1, 2}, {DType::f64})}, 0), doctest::Contains("[cat]"),
                       moegrad::Error);
  CHECK_THROWS_WITH_AS(cat({}, 0), doctest::Contains("[cat]"), moegrad::Error);
  CHECK_THROWS_WITH_AS(cat({a, tf({1, 2}, {2})}, 0), doctest::Contains("[cat]"), moegrad::Error);
}

TEST_CASE("indexing: stack") {
  Tensor a = tf({1, 2}, {2});
  Tensor b = tf({3, 4}, {2});
  Tensor s0 = stack({a, b}, 0);
  CHECK(s0.shape() == Shape{2, 2});
  CHECK(vf(s0) == VF{1, 2, 3, 4});
  Tensor s1 = stack({a, b}, -1);
  CHECK(s1.shape() == Shape{2, 2});
  CHECK(vf(s1) == VF{1, 3, 2, 4});
  Tensor m = tf({1, 2, 3, 4}, {2, 2});
  CHECK(vf(stack({transpose(m, 0, 1), m}, 1)) == VF{1, 3, 1, 2, 2, 4, 3, 4});
  CHECK_THROWS_WITH_AS(stack({a, tf({1, 2, 3}, {3})}, 0),
                       doctest::Contains("[stack] all shapes must be equal, got f32(2"),
                       moegrad::Error);
}

TEST_CASE("indexing: chunk and split") {
  Tensor x = tf({0, 1, 2, 3, 4}, {5});
  auto c = chunk(x, 3, 0);
  REQUIRE(c.size() == 3);
  CHECK(vf(c[0]) == VF{0, 1});
  CHECK(vf(c[1]) == VF{2, 3});
  CHECK(vf(c[2]) == VF{4});
  CHECK(c[1].storage() == x.storage());  // views
  CHECK(chunk(tf({0, 1, 2, 3, 4, 5}, {6}), 4, 0).size() == 3);  // ceil(6/4) = 2 per chunk
  CHECK(chunk(zeros({0}), 2, 0).size() == 2);

  Tensor m = tf({1, 2, 3, 4, 5, 6}, {2, 3});
  auto cols = chunk(m, 2, -1);
  REQUIRE(cols.size() == 2);
  CHECK(vf(cols[0]) == VF{1, 2, 4, 5});
  CHECK(vf(cols[1]) == VF{3, 6});

  auto s = split(x, 2, 0);
  REQUIRE(s.size() == 3);
  CHECK(s[2].shape() == Shape{1});
  auto sz = split(x, VI{1, 4}, 0);
  REQUIRE(sz.size() == 2);
  CHECK(vf(sz[1]) == VF{1, 2, 3, 4});
  CHECK_THROWS_WITH_AS(split(x, VI{1, 2}, 0), doctest::Contains("[split]"), moegrad::Error);
  CHECK_THROWS_WITH_AS(split(x, 0, 0), doctest::Contains("[split]"), moegrad::Error);
  CHECK_THROWS_WITH_AS(chunk(x, 0, 0), doctest::Contains("[chunk]"), moegrad::Error);
}

TEST_CASE("indexing: pad") {
  Tensor x = tf({1, 2, 3, 4, 5, 6}, {2, 3});
  Tensor p = pad(x, {1, 2});
  CHECK(p.shape() == Shape{2, 6});
  CHECK(vf(p) == VF{0, 1, 2, 3, 0, 0, 0, 4, 5, 6, 0, 0});
  // last dim: +1 left, crop 1 right; first dim: crop 1 top, +1 bottom; fill 9.
  Tensor q = pad(x, {1, -1, -1, 1}, 9.0);
  CHECK(q.shape() == Shape{2, 3});
  CHECK(vf(q) == VF{9, 4, 5, 9, 9, 9});
  // Non-contiguous input, i64.
  Tensor xi = transpose(ti({1, 2, 3, 4}, {2, 2}), 0, 1);  // [[1,3],[2,4]]
  CHECK(vi(pad(xi, {0, 0, 1, 0}, -1)) == VI{-1, -1, 1, 3, 2, 4});
  // Cropping everything leaves only the fill.
  CHECK(vf(pad(x, {-3, 1})) == VF{0, 0});

  CHECK_THROWS_WITH_AS(pad(x, {1}), doctest::Contains("[pad]"), moegrad::Error);
  CHECK_THROWS_WITH_AS(pad(x, {1, 1, 1, 1, 1, 1}), doctest::Contains("[pad]"), moegrad::Error);
  CHECK_THROWS_WITH_AS(pad(x, {-2, -2}), doctest::Contains("[pad]"), moegrad::Error);
}

TEST_CASE("indexing: large strided inputs (parallel paths) match a serial reference") {
  const I R = 300, C = 200;  // 60000 elements, above the parallel grain
  VF base(R * C);
  for (I i = 0; i < R * C; ++i) base[i] = static_cast<float>(i % 1000);
  Tensor x = transpose(tf(base, {C, R}), 0, 1);  // (R, C), x[r][c] = base[c * R + r]
  VI rows(R);
  for (I r = 0; r < R; ++r) rows[r] = (r * 37) % R;

  VF sel = vf(index_select(x, 0, ti(rows)));
  bool ok = true;
  for (I r = 0; r < R && ok; ++r)
    for (I c = 0; c < C && ok; ++c) ok = sel[r * C + c] == base[c * R + rows[r]];
  CHECK(ok);

  VI gidx(R * C);
  for (I i = 0; i < R * C; ++i) gidx[i] = (i * 31) % C;
  VF g = vf(gather(x, 1, ti(gidx, {R, C})));
  ok = true;
  for (I r = 0; r < R && ok; ++r)
    for (I c = 0; c < C && ok; ++c) ok = g[r * C + c] == base[gidx[r * C + c] * R + r];
  CHECK(ok);

  // scatter_add of ones along dim 1 counts how often each column is hit per row.
  VF counts = vf(scatter_add(zeros({R, C}), 1, ti(gidx, {R, C}), ones({R, C})));
  VF expect(R * C, 0.0f);
  for (I r = 0; r < R; ++r)
    for (I c = 0; c < C; ++c) expect[r * C + gidx[r * C + c]] += 1;
  CHECK(counts == expect);

  VF added = vf(index_add(zeros({R, C}), 0, ti(rows), x));
  VF expect2(R * C, 0.0f);
  for (I r = 0; r < R; ++r)
    for (I c = 0; c < C; ++c) expect2[rows[r] * C + c] += base[c * R + r];
  CHECK(added == expect2);
}
