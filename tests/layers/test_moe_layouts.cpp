// The two expert row layouts of the MoE fast path (layers/moe/routing.h): the padded layout a
// GPU uses in capacity mode (sizes known without reading the routing, so no copy to the host)
// computes the same layer as the compact one: outputs, losses and every gradient. Also the slot
// assignment's padded rows with outer expert blocks, and on a GPU (skipped without one) that a
// training step in capacity mode never waits for the device.
#include <doctest/doctest.h>

#include <cmath>
#include <functional>
#include <string>
#include <vector>

#include "core/build_info.h"
#include "core/memory.h"
#include "layers/layers.h"
#include "tests/cuda/cuda_test.h"

namespace ag = moegrad::ag;
namespace core = moegrad::core;
namespace moe = moegrad::nn::moe;
namespace nn = moegrad::nn;
using doctest::Contains;
using moegrad::Error;
using moegrad::ag::Variable;
using VI = std::vector<std::int64_t>;

namespace {

const core::TensorOptions kF64{core::DType::f64};

core::Tensor randn(const core::Shape& s, std::uint64_t seed, core::TensorOptions opt = kF64) {
  core::Generator g(seed);
  return core::randn(s, opt, &g);
}

double max_abs_diff(const core::Tensor& a, const core::Tensor& b) {
  REQUIRE(a.shape() == b.shape());
  const core::Device host = core::Device::cpu();
  return core::amax(core::abs(core::sub(core::to_dtype(core::to_device(a, host), core::DType::f64),
                                        core::to_dtype(core::to_device(b, host), core::DType::f64))))
      .item<double>();
}

// One training step's results: output, loss, grad of x, grads of every parameter (by name).
struct Step {
  std::vector<std::pair<std::string, core::Tensor>> values;
};

// forward(x) -> (output, aux loss); loss = sum(out * g) + aux; backward.
Step run_step(nn::Module& m, const std::function<std::pair<Variable, Variable>(const Variable&)>& forward,
              const core::Shape& shape, core::Device device = core::Device::cpu()) {
  m.zero_grad();
  Variable x(core::to_device(randn(shape, 1), device), true);
  const core::Tensor g = core::to_device(randn(shape, 2), device);
  auto [out, aux] = forward(x);
  Variable loss = ag::add(ag::sum(ag::mul(out, ag::constant(g))), aux);
  loss.backward();
  Step s;
  s.values.push_back({"output", out.value()});
  s.values.push_back({"aux loss", aux.value()});
  s.values.push_back({"x.grad", x.grad()});
  for (const auto& [name, p] : m.named_parameters())
    s.values.push_back({name + ".grad", p.grad().defined() ? p.grad() : core::zeros_like(p.value())});
  return s;
}

void check_same(const Step& a, const Step& b, double tol) {
  REQUIRE(a.values.size() == b.values.size());
  for (std::size_t i = 0; i < a.values.size(); ++i) {
    INFO(a.values[i].first);
    CHECK(max_abs_diff(a.values[i].second, b.values[i].second) <= tol);
  }
}

}  // namespace

TEST_CASE("moe layouts: padded rows follow outer expert blocks; counts stay on the routing's device") {
  // Two groups of two tokens, top-1, E = 2 per outer block, outer = 2, capacity 2.
  const auto ex = core::from_vector<std::int64_t>({0, 0, 1, 0}, {4, 1});
  const auto r = moe::route_tokens(ex, {}, 2, 2, 2, 2, /*outer=*/2);
  CHECK(r.kept.shape() == core::Shape{2, 2});
  CHECK(r.kept.to_vector<std::int64_t>() == VI{2, 0, 1, 1});
  CHECK(r.routed.to_vector<std::int64_t>() == VI{2, 0, 1, 1});
  // Flat experts x: group 0 -> 0, 1; group 1 -> 2, 3. Each owns G / outer * capacity = 2 rows.
  const auto padded = moe::padded_rows(r);
  CHECK(padded.num_rows == 8);
  CHECK(padded.offsets.to_vector<std::int64_t>() == VI{0, 2, 4, 6, 8});
  CHECK(padded.row.to_vector<std::int64_t>() == VI{0, 1, 6, 4});
  const auto compact = moe::compact_rows(r);
  CHECK(compact.offsets.to_vector<std::int64_t>() == VI{0, 2, 2, 3, 4});
  CHECK(compact.row.to_vector<std::int64_t>() == VI{0, 1, 3, 2});
  // Dropped choices get no row in either layout.
  const auto r1 = moe::route_tokens(core::from_vector<std::int64_t>({1, 1, 1}, {3, 1}), {}, 1, 3, 2, 2);
  CHECK(r1.position.to_vector<std::int64_t>() == VI{0, 1, 2});
  CHECK(moe::padded_rows(r1).row.to_vector<std::int64_t>() == VI{2, 3, -1});
  CHECK(moe::compact_rows(r1).row.to_vector<std::int64_t>() == VI{0, 1, -1});
  CHECK(moe::kept_mask(r1, core::DType::f32).to_vector<float>() == std::vector<float>{1, 1, 0});
  CHECK(moe::expert_rows(r1).num_rows == 2);  // automatic on the CPU: compact
  CHECK(moe::expert_rows(r1, moe::RowLayout::padded).num_rows == 4);
}

TEST_CASE("moe layouts: bad expert ids are named by the slot assignment") {
  const auto ex = core::from_vector<std::int64_t>({0, 5, 1, 2}, {2, 2});
  CHECK_THROWS_WITH_AS(moe::route_tokens(ex, {}, 1, 2, 3, 2), Contains("[assign_slots] expert id 5 out of range [0, 3)"),
                       Error);
  CHECK_THROWS_WITH_AS(core::assign_slots(ex, {}, 3, 3, 2), Contains("[assign_slots] need groups >= 1 dividing"), Error);
}

TEST_CASE("moe layouts: st_moe.MoE computes the same step on padded and compact rows") {
  nn::st::MoEOptions o;
  o.expert_hidden_mult = 1.5;
  o.gating_top_n = 3;
  o.capacity_factor_train = 0.9;  // drops some choices
  o.threshold_train = {0.1};
  core::Generator gen(3);
  nn::st::MoE m(8, 4, o, kF64, &gen);
  moe::Draws d;
  auto forward = [&](const Variable& x) {
    auto r = m.forward(x, /*noise_gates=*/false, 1.0, d);
    return std::make_pair(r.output, r.aux_loss);
  };
  d.route_uniform = core::rand({3, 2, 12}, kF64, &gen);
  m.set_row_layout(moe::RowLayout::compact);
  const Step compact = run_step(m, forward, {2, 12, 8});
  const auto stats = m.last_routing_stats();
  CHECK(stats.kept < stats.routed);
  m.set_row_layout(moe::RowLayout::padded);
  const Step padded = run_step(m, forward, {2, 12, 8});
  check_same(compact, padded, 1e-12);
  CHECK(m.last_routing_stats().tokens_per_expert == stats.tokens_per_expert);
}

TEST_CASE("moe layouts: lmoe.MoE and HeirarchicalMoE compute the same step on padded and compact rows") {
  nn::lmoe::MoEOptions o;
  o.hidden_dim = 12;
  o.capacity_factor_train = 0.75;
  o.second_policy_train = "threshold";  // no draws: both runs route alike
  core::Generator gen(4);
  moe::Draws d;
  {
    nn::lmoe::MoE m(8, 4, o, kF64, &gen);
    auto forward = [&](const Variable& x) {
      auto r = m.forward(x, {.draws = d});
      return std::make_pair(r.output, r.aux_loss);
    };
    m.set_row_layout(moe::RowLayout::compact);
    const Step compact = run_step(m, forward, {2, 20, 8});
    CHECK(m.last_routing_stats().dropped_fraction > 0.0);
    m.set_row_layout(moe::RowLayout::padded);
    check_same(compact, run_step(m, forward, {2, 20, 8}), 1e-12);
  }
  {
    nn::lmoe::HeirarchicalMoE m(8, {2, 3}, o, kF64, &gen);
    auto forward = [&](const Variable& x) {
      auto r = m.forward(x, {.draws = d});
      return std::make_pair(r.output, r.aux_loss);
    };
    m.set_row_layout(moe::RowLayout::compact);
    const Step compact = run_step(m, forward, {2, 20, 8});
    m.set_row_layout(moe::RowLayout::padded);
    check_same(compact, run_step(m, forward, {2, 20, 8}), 1e-12);
  }
}

TEST_CASE("cuda moe: a training step in capacity mode never waits for the device") {
  SKIP_WITHOUT_CUDA();
  const core::Device cuda = core::Device::cuda(0);
  const core::TensorOptions f32{core::DType::f32, cuda};
  core::Generator gen(5);
  nn::st::MoEOptions so;
  so.gating_top_n = 2;
  nn::st::MoE st_moe(32, 8, so, f32, &gen);
  nn::lmoe::MoEOptions lo;
  nn::lmoe::MoE l_moe(32, 8, lo, f32, &gen);
  Variable x(core::to_device(randn({4, 64, 32}, 6, {core::DType::f32}), cuda), true);
  const core::Tensor g = core::to_device(randn({4, 64, 32}, 7, {core::DType::f32}), cuda);
  auto step = [&](const std::function<std::pair<Variable, Variable>()>& forward) {
    auto [out, aux] = forward();
    ag::add(ag::sum(ag::mul(out, ag::constant(g))), aux).backward();
  };
  const std::vector<std::pair<std::string, std::function<std::pair<Variable, Variable>()>>> layers{
      {"st_moe.MoE",
       [&] {
         auto r = st_moe.forward(x, /*noise_gates=*/true);
         return std::make_pair(r.output, r.aux_loss);
       }},
      {"lmoe.MoE", [&] {
         auto r = l_moe.forward(x);
         return std::make_pair(r.output, r.aux_loss);
       }}};
  for (const auto& [name, forward] : layers) {
    INFO(name);
    step(forward);  // warm-up: the allocator's first blocks
    core::synchronize(cuda);
    const std::int64_t before = core::host_wait_count(cuda);
    step(forward);
    CHECK(core::host_wait_count(cuda) == before);
    core::synchronize(cuda);  // raises any deferred kernel error
  }
  CHECK(st_moe.last_routing_stats().kept > 0);  // read afterwards: this copy waits, the step did not
  // Non-finite gate logits still fail, at the next synchronisation.
  Variable bad(core::to_device(core::full({4, 64, 32}, NAN, {core::DType::f32}), cuda), false);
  st_moe.forward(bad);
  CHECK_THROWS_WITH_AS(core::synchronize(cuda), Contains("[TopNGating] gate logits"), Error);
}
