// matmul / matmul_into against a naive triple loop, over layouts BLAS reads directly
// (transposes, slices, broadcast batches) and layouts that need a copy.
#include <doctest/doctest.h>

#include <array>
#include <cmath>
#include <random>
#include <vector>

#include "core/ops.h"

using namespace moegrad;
using namespace moegrad::core;

namespace {

// Row-major host values of a tensor of >= 2 dims.
struct Host {
  std::vector<double> v;
  Shape s;
};

Host host(const Tensor& t) { return {t.to_vector<double>(), t.shape()}; }

Tensor random_tensor(const Shape& shape, DType dtype = DType::f32, unsigned seed = 1) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<double> dist(-1.0, 1.0);
  std::vector<double> v(static_cast<std::size_t>(shape_numel(shape)));
  for (auto& x : v) x = dist(rng);
  Tensor t = from_vector(v, shape);
  return to_dtype(t, dtype);
}

// NumPy matmul for operands of >= 2 dims: batch dims broadcast.
Host naive_matmul(const Host& a, const Host& b) {
  const std::size_t ra = a.s.size(), rb = b.s.size();
  const std::int64_t m = a.s[ra - 2], k = a.s[ra - 1], n = b.s[rb - 1];
  REQUIRE(b.s[rb - 2] == k);
  const Shape ba(a.s.begin(), a.s.end() - 2), bb(b.s.begin(), b.s.end() - 2);
  const Shape batch = broadcast_shapes("test", ba, bb);
  const std::int64_t nb = shape_numel(batch);
  Host out;
  out.s = batch;
  out.s.push_back(m);
  out.s.push_back(n);
  out.v.assign(static_cast<std::size_t>(nb * m * n), 0.0);
  // Batch index of an operand (broadcast dims map to 0).
  auto batch_index = [&](const Shape& ob, std::int64_t flat) {
    std::int64_t idx = 0, mul = 1;
    for (std::int64_t d = static_cast<std::int64_t>(batch.size()) - 1; d >= 0; --d) {
      const std::int64_t i = flat % batch[d];
      flat /= batch[d];
      const std::int64_t od = d - static_cast<std::int64_t>(batch.size() - ob.size());
      if (od < 0) continue;
      if (ob[od] != 1) idx += i * mul;
      mul *= ob[od];
    }
    return idx;
  };
  for (std::int64_t p = 0; p < nb; ++p) {
    const double* A = a.v.data() + batch_index(ba, p) * m * k;
    const double* B = b.v.data() + batch_index(bb, p) * k * n;
    double* C = out.v.data() + p * m * n;
    for (std::int64_t i = 0; i < m; ++i)
      for (std::int64_t j = 0; j < n; ++j) {
        double s = 0;
        for (std::int64_t q = 0; q < k; ++q) s += A[i * k + q] * B[q * n + j];
        C[i * n + j] = s;
      }
  }
  return out;
}

Host transpose_last(const Host& h) {
  const std::size_t r = h.s.size();
  const std::int64_t rows = h.s[r - 2], cols = h.s[r - 1];
  Host out{h.v, h.s};
  std::swap(out.s[r - 2], out.s[r - 1]);
  const std::int64_t nb = shape_numel(h.s) / std::max<std::int64_t>(1, rows * cols);
  for (std::int64_t p = 0; p < nb; ++p)
    for (std::int64_t i = 0; i < rows; ++i)
      for (std::int64_t j = 0; j < cols; ++j)
        out.v[p * rows * cols + j * rows + i] = h.v[p * rows * cols + i * cols + j];
  return out;
}

void check_close(const Tensor& got, const Host& want, double tol) {
  REQUIRE(got.shape() == want.s);
  const auto g = got.to_vector<double>();
  REQUIRE(g.size() == want.v.size());
  double worst = 0;
  for (std::size_t i = 0; i < g.size(); ++i)
    worst = std::max(worst, std::abs(g[i] - want.v[i]) / (1.0 + std::abs(want.v[i])));
  CHECK(worst <= tol);
}

double tol_for(DType d, std::int64_t k) { return (d == DType::f32 ? 2e-6 : 1e-14) * (k + 4); }

// matmul(a, b) vs the loop on a's and b's values.
void check_matmul(const Tensor& a, const Tensor& b) {
  INFO("a ", describe(a), " strides ", shape_str(a.strides()), ", b ", describe(b), " strides ",
       shape_str(b.strides()));
  check_close(matmul(a, b), naive_matmul(host(a), host(b)), tol_for(a.dtype(), a.size(-1)));
}

}  // namespace

TEST_CASE("linalg: 2-D matmul matches a naive loop") {
  for (DType dt : {DType::f32, DType::f64}) {
    for (auto [m, k, n] : std::vector<std::array<std::int64_t, 3>>{
             {1, 1, 1}, {3, 4, 5}, {17, 33, 9}, {64, 1, 64}, {1, 70, 1}, {40, 40, 40}}) {
      check_matmul(random_tensor({m, k}, dt, 1), random_tensor({k, n}, dt, 2));
      const Tensor c = matmul(random_tensor({m, k}, dt, 1), random_tensor({k, n}, dt, 2));
      CHECK(c.dtype() == dt);
      CHECK(c.is_contiguous());
    }
  }
}

TEST_CASE("linalg: batched and broadcast batch dims") {
  check_matmul(random_tensor({3, 4, 5}, DType::f32, 1), random_tensor({3, 5, 6}, DType::f32, 2));
  // [2,1,3,4] @ [5,4,6] -> [2,5,3,6]
  const Tensor a = random_tensor({2, 1, 3, 4}, DType::f32, 3);
  const Tensor b = random_tensor({5, 4, 6}, DType::f32, 4);
  CHECK(matmul(a, b).shape() == Shape{2, 5, 3, 6});
  check_matmul(a, b);
  // Shared right operand (one GEMM over batch * m rows) and shared left operand.
  check_matmul(random_tensor({2, 3, 7, 5}, DType::f32, 5), random_tensor({5, 4}, DType::f32, 6));
  check_matmul(random_tensor({7, 5}, DType::f64, 5), random_tensor({3, 5, 4}, DType::f64, 6));
  check_matmul(random_tensor({1, 7, 5}, DType::f64, 5), random_tensor({3, 1, 5, 4}, DType::f64, 6));
  // Explicitly expanded operands (stride-0 batch dims and stride-0 matrix rows).
  check_matmul(expand(random_tensor({4, 5}, DType::f32, 7), {3, 4, 5}),
               random_tensor({3, 5, 2}, DType::f32, 8));
  check_matmul(random_tensor({3, 4, 5}, DType::f32, 7),
               expand(random_tensor({1, 1, 2}, DType::f32, 8), {3, 5, 2}));
  // Batch dims that do not merge with the rows (sliced batch).
  check_matmul(slice(random_tensor({6, 4, 5}, DType::f32, 9), 0, 0, 6, 2),
               random_tensor({5, 3}, DType::f32, 10));
  // Empty batch.
  CHECK(matmul(random_tensor({0, 4, 5}), random_tensor({5, 3})).shape() == Shape{0, 4, 3});
}

TEST_CASE("linalg: transposed inputs, as views and as trans flags") {
  for (DType dt : {DType::f32, DType::f64}) {
    const Tensor at = random_tensor({2, 6, 4}, dt, 11);  // stored [k, m]
    const Tensor bt = random_tensor({2, 5, 6}, dt, 12);  // stored [n, k]
    const Tensor a = random_tensor({2, 4, 6}, dt, 13);
    const Tensor b = random_tensor({2, 6, 5}, dt, 14);
    const double tol = tol_for(dt, 6);
    // Views.
    check_matmul(transpose(at, 1, 2), b);
    check_matmul(a, transpose(bt, 1, 2));
    check_matmul(transpose(at, 1, 2), transpose(bt, 1, 2));
    // Flags.
    const Host ha = host(a), hb = host(b);
    const Host hat = transpose_last(host(at)), hbt = transpose_last(host(bt));
    check_close(matmul(at, b, true, false), naive_matmul(hat, hb), tol);
    check_close(matmul(a, bt, false, true), naive_matmul(ha, hbt), tol);
    check_close(matmul(at, bt, true, true), naive_matmul(hat, hbt), tol);
    // Flag on a transposed view: back to the stored layout.
    check_close(matmul(transpose(a, 1, 2), b, true, false), naive_matmul(ha, hb), tol);
    // Permuted batch dim in front of a transposed matrix.
    const Tensor p = random_tensor({4, 2, 6}, dt, 15);  // [m, batch, k]
    check_matmul(permute(p, {1, 0, 2}), b);
  }
}

TEST_CASE("linalg: sliced and non-contiguous inputs") {
  const Tensor big = random_tensor({3, 10, 12}, DType::f32, 21);
  // Row stride larger than the row (BLAS lda), no copy needed.
  check_matmul(narrow(big, 2, 3, 5), random_tensor({5, 4}, DType::f32, 22));
  check_matmul(random_tensor({2, 7}, DType::f32, 23), narrow(narrow(big, 1, 1, 7), 2, 2, 6));
  // Column step 2: no unit stride, needs a copy.
  check_matmul(slice(big, 2, 0, 12, 2), random_tensor({6, 3}, DType::f32, 24));
  check_matmul(random_tensor({4, 5}, DType::f32, 25), slice(slice(big, 1, 0, 10, 2), 2, 1, 12, 3));
  // Transposed slice (column-major with ld > rows).
  check_matmul(transpose(narrow(big, 1, 2, 5), 1, 2), random_tensor({5, 3}, DType::f32, 26));
  // A select()ed batch.
  check_matmul(select(big, 0, 1), random_tensor({12, 2}, DType::f32, 27));
}

TEST_CASE("linalg: 1-D operands follow NumPy") {
  for (DType dt : {DType::f32, DType::f64}) {
    const Tensor v = random_tensor({4}, dt, 31);
    const Tensor M = random_tensor({4, 3}, dt, 32);
    const Tensor N = random_tensor({5, 4}, dt, 33);
    const Tensor B = random_tensor({2, 4, 3}, dt, 34);
    const Tensor BN = random_tensor({2, 5, 4}, dt, 35);
    const double tol = tol_for(dt, 4);
    const Host hv_row{host(v).v, {1, 4}}, hv_col{host(v).v, {4, 1}};
    // vector @ matrix -> [3]
    Tensor r = matmul(v, M);
    CHECK(r.shape() == Shape{3});
    check_close(reshape(r, {1, 3}), naive_matmul(hv_row, host(M)), tol);
    // matrix @ vector -> [5]
    r = matmul(N, v);
    CHECK(r.shape() == Shape{5});
    check_close(reshape(r, {5, 1}), naive_matmul(host(N), hv_col), tol);
    // vector @ vector -> 0-d
    r = matmul(v, v);
    CHECK(r.dim() == 0);
    double dot = 0;
    for (double x : host(v).v) dot += x * x;
    CHECK(r.item<double>() == doctest::Approx(dot).epsilon(1e-6));
    // vector @ batched -> [2, 3]; batched @ vector -> [2, 5]
    r = matmul(v, B);
    CHECK(r.shape() == Shape{2, 3});
    check_close(reshape(r, {2, 1, 3}), naive_matmul(hv_row, host(B)), tol);
    r = matmul(BN, v);
    CHECK(r.shape() == Shape{2, 5});
    check_close(reshape(r, {2, 5, 1}), naive_matmul(host(BN), hv_col), tol);
    // Strided vector (step 2) on both sides; trans flag ignored for the 1-D operand.
    const Tensor vs = slice(random_tensor({8}, dt, 36), 0, 0, 8, 2);
    const Host hs_row{host(vs).v, {1, 4}}, hs_col{host(vs).v, {4, 1}};
    check_close(reshape(matmul(vs, M), {1, 3}), naive_matmul(hs_row, host(M)), tol);
    check_close(reshape(matmul(N, vs), {5, 1}), naive_matmul(host(N), hs_col), tol);
    check_close(reshape(matmul(M, vs, true, false), {3, 1}),
                naive_matmul(transpose_last(host(M)), hs_col), tol);
  }
}

TEST_CASE("linalg: matmul_into with alpha and beta") {
  for (DType dt : {DType::f32, DType::f64}) {
    const Tensor a = random_tensor({2, 3, 4}, dt, 41);
    const Tensor b = random_tensor({4, 5}, dt, 42);
    const Tensor out = random_tensor({2, 3, 5}, dt, 43);
    const Host before = host(out);
    const Host prod = naive_matmul(host(a), host(b));
    matmul_into(out, a, b, false, false, 2.0, 1.0);
    Host want = prod;
    for (std::size_t i = 0; i < want.v.size(); ++i) want.v[i] = 2.0 * prod.v[i] + before.v[i];
    check_close(out, want, tol_for(dt, 4));
    // beta = 0 overwrites (even NaN garbage).
    fill_(out, std::nan(""));
    matmul_into(out, a, b, false, false);
    check_close(out, prod, tol_for(dt, 4));
    // Accumulate a gradient-like product with trans flags: out += a^T @ g.
    const Tensor g = random_tensor({2, 3, 5}, dt, 44);
    const Tensor acc = zeros({2, 4, 5}, {dt});
    matmul_into(acc, a, g, true, false, 1.0, 1.0);
    matmul_into(acc, a, g, true, false, 1.0, 1.0);
    Host twice = naive_matmul(transpose_last(host(a)), host(g));
    for (auto& x : twice.v) x *= 2;
    check_close(acc, twice, tol_for(dt, 3));
    // 1-D result shape.
    const Tensor ov = zeros({3}, {dt});
    matmul_into(ov, random_tensor({3, 4}, dt, 45), random_tensor({4}, dt, 46), false, false);
    CHECK(ov.shape() == Shape{3});
  }
}

TEST_CASE("linalg: products large enough to be split over the threads, and batches side by side") {
  // Above 2^18 multiply-adds the CPU splits one product over its threads: by C's rows, or by its
  // columns when m < n / 4; a batch of at least as many products as threads runs side by side.
  for (DType dt : {DType::f32, DType::f64}) {
    for (auto [m, k, n] : std::vector<std::array<std::int64_t, 3>>{{301, 50, 70}, {70, 50, 301}, {33, 41, 1001}}) {
      const Tensor a = random_tensor({m, k}, dt, 51), b = random_tensor({k, n}, dt, 52);
      const Tensor at = random_tensor({k, m}, dt, 53), bt = random_tensor({n, k}, dt, 54);
      const Host ha = host(a), hb = host(b), hat = transpose_last(host(at)), hbt = transpose_last(host(bt));
      const double tol = tol_for(dt, k);
      check_close(matmul(a, b), naive_matmul(ha, hb), tol);
      check_close(matmul(at, b, true, false), naive_matmul(hat, hb), tol);
      check_close(matmul(a, bt, false, true), naive_matmul(ha, hbt), tol);
      check_close(matmul(at, bt, true, true), naive_matmul(hat, hbt), tol);
      // alpha and beta apply in every block.
      const Tensor out = random_tensor({m, n}, dt, 55);
      Host want = host(out);
      const Host prod = naive_matmul(ha, hbt);
      for (std::size_t i = 0; i < want.v.size(); ++i) want.v[i] = 0.5 * prod.v[i] + want.v[i];
      matmul_into(out, a, bt, false, true, 0.5, 1.0);
      check_close(out, want, tol);
    }
    check_matmul(random_tensor({3, 64, 80}, dt, 56), random_tensor({3, 80, 72}, dt, 57));
    check_matmul(random_tensor({5, 9, 20}, dt, 58), random_tensor({5, 20, 7}, dt, 59));
  }
}

TEST_CASE("linalg: k = 0 and empty results") {
  const Tensor a = zeros({3, 0});
  const Tensor b = zeros({0, 4});
  const Tensor c = matmul(a, b);
  CHECK(c.shape() == Shape{3, 4});
  for (double x : c.to_vector<double>()) CHECK(x == 0.0);
  const Tensor out = full({3, 4}, 2.0);
  matmul_into(out, a, b, false, false, 1.0, 0.5);
  for (double x : out.to_vector<double>()) CHECK(x == 1.0);
  matmul_into(out, a, b, false, false, 1.0, 1.0);
  for (double x : out.to_vector<double>()) CHECK(x == 1.0);
  fill_(out, std::nan(""));
  matmul_into(out, a, b, false, false, 1.0, 0.0);
  for (double x : out.to_vector<double>()) CHECK(x == 0.0);
  // Batched k = 0, and m = 0 / n = 0.
  const Tensor cb = matmul(zeros({2, 3, 0}, {DType::f64}), zeros({0, 2}, {DType::f64}));
  CHECK(cb.shape() == Shape{2, 3, 2});
  for (double x : cb.to_vector<double>()) CHECK(x == 0.0);
  CHECK(matmul(zeros({0, 3}), zeros({3, 4})).shape() == Shape{0, 4});
  CHECK(matmul(zeros({2, 3}), zeros({3, 0})).shape() == Shape{2, 0});
  CHECK(matmul(zeros({0}), zeros({0})).item<double>() == 0.0);
}

TEST_CASE("linalg: errors") {
  using doctest::Contains;
  const Tensor a = zeros({2, 3});
  const Tensor b = zeros({4, 5});
  CHECK_THROWS_WITH_AS(matmul(a, b), "[matmul] inner dims differ: (2, 3) vs (4, 5)", Error);
  CHECK_THROWS_WITH_AS(matmul(a, zeros({2, 3}), true, true), Contains("[matmul] inner dims differ"),
                       Error);
  CHECK_THROWS_WITH_AS(matmul(zeros({3}), zeros({4})), Contains("[matmul] inner dims differ"), Error);
  CHECK_THROWS_WITH_AS(matmul(zeros({2, 2, 3}), zeros({3, 3, 4})), Contains("[matmul]"), Error);
  // dtypes
  CHECK_THROWS_WITH_AS(matmul(zeros({2, 3}, {DType::i64}), zeros({3, 2}, {DType::i64})),
                       Contains("[matmul] needs f32, f64 or bf16, got i64"), Error);
  CHECK_THROWS_WITH_AS(matmul(zeros({2, 3}), zeros({3, 2}, {DType::f64})), Contains("[matmul]"),
                       Error);
  // 0-d operands
  CHECK_THROWS_WITH_AS(matmul(scalar_tensor(1.0), zeros({3})), Contains("[matmul]"), Error);
  CHECK_THROWS_WITH_AS(matmul(zeros({3}), scalar_tensor(1.0)), Contains("[matmul]"), Error);
  CHECK_THROWS_WITH_AS(matmul(Tensor{}, zeros({3})), Contains("[matmul]"), Error);
  // matmul_into: shape, layout, dtype, aliasing
  const Tensor x = zeros({2, 3}), y = zeros({3, 4});
  CHECK_THROWS_WITH_AS(matmul_into(zeros({2, 5}), x, y, false, false), Contains("[matmul]"), Error);
  CHECK_THROWS_WITH_AS(matmul_into(transpose(zeros({4, 2}), 0, 1), x, y, false, false),
                       Contains("[matmul] out must be contiguous"), Error);
  CHECK_THROWS_WITH_AS(matmul_into(zeros({2, 4}, {DType::f64}), x, y, false, false),
                       Contains("[matmul]"), Error);
  const Tensor sq = zeros({3, 3});
  CHECK_THROWS_WITH_AS(matmul_into(sq, sq, zeros({3, 3}), false, false), Contains("[matmul]"),
                       Error);
}
