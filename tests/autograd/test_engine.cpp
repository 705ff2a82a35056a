// The autograd engine: accumulation, graph shapes, modes and errors.
#include <doctest/doctest.h>

#include <cmath>
#include <utility>

#include "autograd/autograd.h"

namespace ag = moegrad::ag;
namespace core = moegrad::core;
using ag::Variable;
using doctest::Contains;
using moegrad::Error;

namespace {
Variable leaf(std::vector<double> v, core::Shape s) { return Variable(core::from_vector<double>(v, s), true); }
std::vector<double> grad_of(const Variable& v) { return v.grad().to_vector<double>(); }
}  // namespace

TEST_CASE("autograd: simple graph, shared input, accumulation") {
  Variable x = leaf({1, 2, 3}, {3});
  Variable y = ag::sum(ag::mul(x, x));  // d/dx = 2x (x used twice: diamond)
  CHECK(y.item<double>() == 14);
  y.backward();
  CHECK(grad_of(x) == std::vector<double>{2, 4, 6});
  ag::sum(ag::mul(x, 3.0)).backward();  // accumulates
  CHECK(grad_of(x) == std::vector<double>{5, 7, 9});
  x.zero_grad();
  CHECK_FALSE(x.grad().defined());
}

TEST_CASE("autograd: broadcast gradients are summed to the input shape") {
  Variable a = leaf({1, 2, 3, 4, 5, 6}, {2, 3});
  Variable b = leaf({10, 20, 30}, {3});
  Variable c = leaf({2}, {});
  ag::sum(ag::mul(ag::add(a, b), c)).backward();
  CHECK(grad_of(a) == std::vector<double>(6, 2.0));
  CHECK(grad_of(b) == std::vector<double>{4, 4, 4});
  CHECK(grad_of(c) == std::vector<double>{21 + 6 * 20.0});
}

TEST_CASE("autograd: backward with an explicit gradient") {
  Variable x = leaf({1, 2}, {2});
  Variable y = ag::mul(x, 3.0);
  y.backward(core::from_vector<double>({1, 10}));
  CHECK(grad_of(x) == std::vector<double>{3, 30});
}

TEST_CASE("autograd: constants, detach and NoGradGuard record nothing") {
  Variable x = leaf({1, 2}, {2});
  Variable k = ag::constant(core::from_vector<double>({5, 5}));
  CHECK_FALSE(k.requires_grad());
  Variable y = ag::mul(x, k);
  CHECK(y.requires_grad());
  CHECK_FALSE(y.is_leaf());
  CHECK(y.grad_fn()->name == std::string("mul"));
  Variable d = y.detach();
  CHECK(d.is_leaf());
  CHECK_FALSE(d.requires_grad());
  {
    ag::NoGradGuard guard;
    CHECK_FALSE(ag::grad_mode_enabled());
    Variable z = ag::mul(x, x);
    CHECK_FALSE(z.requires_grad());
    CHECK(z.is_leaf());
  }
  CHECK(ag::grad_mode_enabled());
  ag::sum(ag::add(ag::mul(d, x), k)).backward();
  CHECK(grad_of(x) == std::vector<double>{5, 10});
  CHECK_FALSE(k.grad().defined());
}

TEST_CASE("autograd: integer and comparison results carry no gradient") {
  Variable x = leaf({3, 1, 2}, {3});
  core::Tensor i = ag::argmax(x, 0);
  CHECK(i.dtype() == core::DType::i64);
  auto top = ag::topk(x, 2);
  CHECK(top.indices.dtype() == core::DType::i64);
  CHECK(top.values.requires_grad());
  CHECK_THROWS_WITH_AS(Variable(core::arange(3), true), Contains("[Variable] only f32/f64 tensors can require grad"), Error);
}

TEST_CASE("autograd: a 100,000-op chain runs and frees without recursion") {
  Variable x = leaf({1.0}, {1});
  Variable y = x;
  for (int i = 0; i < 100000; ++i) y = ag::add(y, 1e-6);
  ag::sum(y).backward();
  CHECK(grad_of(x) == std::vector<double>{1.0});
  y = Variable();  // drops the whole chain: the iterative destructor must not overflow the stack
}

TEST_CASE("autograd: the graph is freed after backward") {
  Variable x = leaf({1, 2}, {2});
  core::Tensor big = core::ones({2}, {core::DType::f64});
  Variable y = ag::sum(ag::mul(x, ag::constant(big)));
  CHECK(big.storage().use_count() > 1);  // saved by mul's closure
  y.backward();
  CHECK(big.storage().use_count() == 1);  // released once the node ran
  CHECK_THROWS_WITH_AS(y.backward(), Contains("[backward] the graph through op sum was already freed"), Error);
}

TEST_CASE("autograd: errors") {
  Variable x = leaf({1, 2}, {2});
  CHECK_THROWS_WITH_AS(ag::mul(x, 2.0).backward(),
                       Contains("[backward] implicit gradient only for scalar outputs; output is f64(2,)"), Error);
  CHECK_THROWS_WITH_AS(ag::mul(x, 2.0).backward(core::ones({3}, {core::DType::f64})),
                       Contains("[backward] gradient f64(3,) does not match output f64(2,)"), Error);
  Variable c = ag::constant(core::ones({1}, {core::DType::f64}));
  CHECK_THROWS_WITH_AS(c.backward(), Contains("[backward] f64(1,) does not require grad"), Error);
  CHECK_THROWS_WITH_AS(ag::matmul(x, leaf({1, 2, 3}, {3})), Contains("[matmul]"), Error);
  CHECK_THROWS_WITH_AS(ag::to_dtype(x, core::DType::i64), Contains("[to_dtype] a gradient cannot flow"), Error);
  CHECK_THROWS_WITH_AS(x.set_grad(core::ones({3})), Contains("[set_grad] gradient f32(3,) does not match value f64(2,)"), Error);
}

TEST_CASE("autograd: a leaf takes over a gradient nobody else holds, and never aliases a shared one") {
  // matmul's weight gradient is fresh: .grad takes it over instead of copying it.
  // x [1, 16], w [16, 16384] f64 (2 MiB): dW = x^T @ ones, row i all x_i.
  std::vector<double> xs(16);
  for (int i = 0; i < 16; ++i) xs[i] = i + 1;
  Variable x = leaf(xs, {1, 16});
  Variable w = Variable(core::ones({16, 16384}, {core::DType::f64}), true);
  const Variable y = ag::sum(ag::matmul(x, w));
  const std::int64_t w_bytes = 16 * 16384 * 8;
  core::synchronize(core::Device::cpu());
  core::reset_peak_memory(core::Device::cpu());
  const std::int64_t before = core::memory_stats(core::Device::cpu()).allocated;
  y.backward();
  const std::int64_t peak = core::memory_stats(core::Device::cpu()).peak_allocated - before;
  CHECK(peak >= w_bytes);
  CHECK(peak < w_bytes + w_bytes / 2);  // one weight-sized buffer (a copy into .grad would need two)
  CHECK(w.grad().storage().use_count() == 1);
  const std::vector<double> dw = grad_of(w);
  CHECK(dw[0] == 1);
  CHECK(dw[16383] == 1);
  CHECK(dw[16384] == 2);
  CHECK(dw[15 * 16384 + 7] == 16);

  // add's backward hands the same gradient to both inputs: each leaf gets its own storage.
  Variable a = leaf({1, 2}, {2});
  Variable b = leaf({3, 4}, {2});
  ag::add(a, b).backward(core::from_vector<double>({1, 10}));
  CHECK(a.grad().storage() != b.grad().storage());
  core::add_(a.grad(), core::from_vector<double>({100, 100}));
  CHECK(grad_of(b) == std::vector<double>{1, 10});

  // the seed the caller passes is never taken over either.
  Variable c = leaf({1, 2}, {2});
  const core::Tensor seed = core::from_vector<double>({7, 8});
  ag::mul(c, 1.0).backward(seed);
  ag::reshape(c, {2}).backward(seed);
  CHECK(c.grad().storage() != seed.storage());
  CHECK(seed.to_vector<double>() == std::vector<double>{7, 8});
}

TEST_CASE("autograd: a gradient from two consumers is summed correctly when added in place") {
  // y feeds two branches; the second branch's gradient is added into the first's buffer.
  Variable x = leaf({1, 2, 3}, {3});
  Variable y = ag::mul(x, 2.0);
  ag::sum(ag::add(ag::mul(y, 3.0), ag::exp(ag::mul(y, 0.0)))).backward();
  CHECK(grad_of(x) == std::vector<double>{6, 6, 6});
}

TEST_CASE("autograd: relu's backward writes into the incoming gradient's buffer when it is the only holder") {
  // x [2^18] f64 (2 MiB); relu's saved output is already counted in `before`. Backward: the
  // outer mul's fresh gradient (2 MiB) goes into relu, which writes into it instead of a second
  // buffer; the inner mul's gradient is allocated after relu has freed its saved output.
  const std::int64_t n = 1 << 18;
  std::vector<double> xs(n);
  for (std::int64_t i = 0; i < n; ++i) xs[i] = (i % 2 == 0) ? 1.0 : -1.0;
  Variable x = leaf(xs, {n});
  const Variable loss = ag::sum(ag::mul(ag::relu(ag::mul(x, 2.0)), 3.0));
  const std::int64_t bytes = n * 8;
  core::reset_peak_memory(core::Device::cpu());
  const std::int64_t before = core::memory_stats(core::Device::cpu()).allocated;
  loss.backward();
  const std::int64_t peak = core::memory_stats(core::Device::cpu()).peak_allocated - before;
  CHECK(peak < bytes + bytes / 2);  // one gradient buffer at a time (two without the reuse)
  const std::vector<double> g = grad_of(x);
  CHECK(g[0] == 6.0);
  CHECK(g[1] == 0.0);
  CHECK(g[n - 2] == 6.0);
  CHECK(g[n - 1] == 0.0);
}

TEST_CASE("autograd: geglu's backward writes over its saved input and incoming gradient when it may") {
  // h = x * 1 is an intermediate [R, 2H]; when nothing else holds it, d h is written over it and
  // d mult over the incoming gradient. Holding h (or its gradient's source) gives the same numbers
  // through fresh buffers.
  const std::int64_t R = 64, H = 512;
  std::vector<double> xs(R * 2 * H), ms(R * H);
  for (std::size_t i = 0; i < xs.size(); ++i) xs[i] = std::sin(0.37 * static_cast<double>(i));
  for (std::size_t i = 0; i < ms.size(); ++i) ms[i] = 1.0 + 0.5 * std::cos(0.11 * static_cast<double>(i));
  auto run = [&](bool hold_h, std::int64_t* peak) {
    Variable x = leaf(xs, {R, 2 * H});
    Variable mult = leaf(ms, {R, H});
    Variable h = ag::mul(x, 1.0);
    const Variable loss = ag::sum(ag::mul(ag::geglu(h, mult), 3.0));
    core::Tensor held = hold_h ? h.value() : core::Tensor{};
    h = Variable();
    core::reset_peak_memory(core::Device::cpu());
    const std::int64_t before = core::memory_stats(core::Device::cpu()).allocated;
    loss.backward();
    *peak = core::memory_stats(core::Device::cpu()).peak_allocated - before;
    return std::make_pair(grad_of(x), grad_of(mult));
  };
  std::int64_t peak_fresh = 0, peak_reused = 0;
  const auto fresh = run(true, &peak_fresh);
  const auto reused = run(false, &peak_reused);
  CHECK(reused.first == fresh.first);
  CHECK(reused.second == fresh.second);
  const std::int64_t half_bytes = R * H * 8;  // [R, H] f64
  CHECK(peak_fresh - peak_reused >= 2 * half_bytes);  // no new [R, 2H] buffer
  // d value = 3 mult gelu(gate) at one element, against the formula.
  const double gate = xs[H], value = xs[0], m = ms[0];
  const double gelu = 0.5 * gate * (1 + std::erf(gate / std::sqrt(2.0)));
  CHECK(reused.first[0] == doctest::Approx(3 * m * gelu).epsilon(1e-12));
  CHECK(reused.second[0] == doctest::Approx(3 * value * gelu).epsilon(1e-12));
}
