// The differentiable all_to_all_v across ranks: forward values, and a backward that is the
// reverse exchange, checked exactly on loss = sum(y * c) with a known c (d loss / d x is c,
// carried back to the rank and row each value came from).
#include <doctest/doctest.h>

#include "autograd/functions.h"
#include "core/ops.h"
#include "dist/autograd_collectives.h"
#include "dist/world.h"

namespace ag = moegrad::ag;
namespace core = moegrad::core;
namespace dist = moegrad::dist;
using core::Tensor;

namespace {
// Rows rank p sends to rank q (rank 0 sends nothing; some pairs none).
std::int64_t rows_from_to(int p, int q) { return p == 0 ? 0 : (p + q) % 3; }
double x_value(int p, int q, std::int64_t i, int col) { return 1000.0 * p + 100.0 * q + 10.0 * i + col; }
// The loss weight of the row that rank p sent to rank q (row i of that block), column col.
double weight(int p, int q, std::int64_t i, int col) { return 1.0 + p + 7.0 * q + 0.5 * static_cast<double>(i) + 0.25 * col; }

constexpr int kCols = 3;

// Rank `me`'s blocks for every peer, in peer order, of f(me, q, i, col) (rows_from_to(me, q)
// rows for peer q) when outgoing; of f(q, me, i, col) (what q sends here) when incoming.
template <class F>
std::vector<double> blocks(int me, int n, bool outgoing, F f) {
  std::vector<double> v;
  for (int q = 0; q < n; ++q) {
    const int from = outgoing ? me : q, to = outgoing ? q : me;
    for (std::int64_t i = 0; i < rows_from_to(from, to); ++i)
      for (int c = 0; c < kCols; ++c) v.push_back(f(from, to, i, c));
  }
  return v;
}

Tensor rows_tensor(const std::vector<double>& v) {
  return core::from_vector(v, {static_cast<std::int64_t>(v.size() / kCols), kCols});
}
}  // namespace

TEST_CASE("dist: differentiable all_to_all_v: forward, and backward is the reverse exchange") {
  auto w = dist::world_ptr();
  const int me = w->rank(), n = w->size();
  std::vector<std::int64_t> send_rows, recv_rows;
  for (int q = 0; q < n; ++q) {
    send_rows.push_back(rows_from_to(me, q));
    recv_rows.push_back(rows_from_to(q, me));
  }
  ag::Variable x(rows_tensor(blocks(me, n, true, x_value)), true);
  ag::Variable y = dist::all_to_all_v(x, w, send_rows, recv_rows);
  CHECK(y.value().to_vector<double>() == blocks(me, n, false, x_value));
  CHECK(y.requires_grad());

  const ag::Variable c = ag::constant(rows_tensor(blocks(me, n, false, weight)));
  ag::sum(ag::mul(y, c)).backward();
  REQUIRE(x.grad().defined());
  CHECK(x.grad().shape() == x.shape());
  // Each of x's rows gets the weight its receiver applied to it.
  CHECK(x.grad().to_vector<double>() == blocks(me, n, true, weight));
}

TEST_CASE("dist: differentiable all_to_all_v inside a sub-group, twice in one graph") {
  auto w = dist::world_ptr();
  const int me = w->rank();
  auto pair = w->split(me / 2, me, "pair");
  const int k = pair->size();
  // Each member sends member q (q + 1) rows of its own world rank; then the rows go back.
  std::vector<std::int64_t> send_rows, recv_rows;
  for (int q = 0; q < k; ++q) send_rows.push_back(q + 1);
  for (int q = 0; q < k; ++q) recv_rows.push_back(pair->rank() + 1);
  const std::int64_t rows = k * (k + 1) / 2;
  ag::Variable x(core::full({rows, 2}, static_cast<double>(me + 1), {core::DType::f64}), true);
  ag::Variable there = dist::all_to_all_v(x, pair, send_rows, recv_rows);
  ag::Variable back = dist::all_to_all_v(ag::mul(there, 3.0), pair, recv_rows, send_rows);
  CHECK(back.value().to_vector<double>() == std::vector<double>(static_cast<std::size_t>(2 * rows), 3.0 * (me + 1)));
  ag::sum(back).backward();
  CHECK(x.grad().to_vector<double>() == std::vector<double>(static_cast<std::size_t>(2 * rows), 3.0));
}
