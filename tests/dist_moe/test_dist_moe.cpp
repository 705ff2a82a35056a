// Expert parallelism is the same computation as one process (issue 14): launched as W ranks
// (mpirun), each rank r runs micro-batch r through a MoE layer whose experts are placed over an
// expert-parallel group of P ranks (P = W, and P < W), and must get what the single-process
// layer (built on every rank from the same seed) gets on that micro-batch: outputs and losses
// within 1e-6 relative; after each rank backpropagates its micro-batch's loss, the expert
// gradients summed over the replicas of its experts and the replicated gradients summed over
// the world equal, within 1e-5 relative, the single-process gradients accumulated over all W
// micro-batches (the slice of this rank's experts for the expert gradients), and the input's
// gradient equals the single-process one. For st_moe (gate noise; capacity drops; dropless;
// the padded row layout), lucidrains (the 'random' policy) and hierarchical. The random draws
// of micro-batch m are made from seeds of m (moe::Draws), so both sides draw the same numbers.
//
// Every rank runs the same collectives in the same order whatever its results: the tests use
// CHECK (never REQUIRE), so a failure on one rank cannot leave the others waiting.
#include <doctest/doctest.h>

#include <cstdio>
#include <functional>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "dist/world.h"
#include "layers/layers.h"
#include "tests/test_random.h"

namespace ag = moegrad::ag;
namespace core = moegrad::core;
namespace dist = moegrad::dist;
namespace moe = moegrad::nn::moe;
namespace nn = moegrad::nn;
using moegrad::ag::Variable;

namespace {

constexpr std::int64_t kB = 2, kN = 12, kDim = 8;
constexpr std::uint64_t kModelSeed = 2026;

using moegrad::testing::rand;
using moegrad::testing::randn;
// max |a - b| / max |b| (0 when both are zero).
double rel_diff(const core::Tensor& a, const core::Tensor& b) {
  if (a.shape() != b.shape()) return 1e30;
  const auto f64 = [](const core::Tensor& t) { return core::to_dtype(t, core::DType::f64); };
  const double diff = core::amax(core::abs(core::sub(f64(a), f64(b)))).item<double>();
  const double scale = b.numel() ? core::amax(core::abs(f64(b))).item<double>() : 0.0;
  return diff == 0.0 ? 0.0 : diff / (scale > 0.0 ? scale : 1e-300);
}
core::Tensor grad_or_zeros(const Variable& v) { return v.grad().defined() ? core::clone(v.grad()) : core::zeros_like(v.value()); }

// One layer kind under test.
struct Case {
  std::string name;
  std::function<std::shared_ptr<moe::MoELayer>(core::Generator*)> make;
  // The draws of micro-batch m, the same on every rank.
  std::function<moe::MoEForward(moe::MoELayer&, int)> forward_args;
  moe::RowLayout layout = moe::RowLayout::automatic;
};

moe::MoEForward st_args(moe::MoELayer& layer, int m) {
  const auto& st = dynamic_cast<nn::st::MoE&>(layer);
  moe::MoEForward f;
  f.noise_gates = true;
  f.noise_mult = 0.7;
  f.draws.noise_uniform = rand({kB, kN, st.total_experts()}, 1000 + m);
  f.draws.route_uniform = rand({st.gate()->options().top_n, kB, kN}, 2000 + m);
  return f;
}

moe::MoEForward lmoe_args(moe::MoELayer& layer, int m) {
  moe::MoEForward f;
  f.draws.policy_uniform = rand({kB, kN}, 3000 + m);
  if (auto* h = dynamic_cast<nn::lmoe::HeirarchicalMoE*>(&layer)) {
    auto outer = std::dynamic_pointer_cast<nn::lmoe::Top2Gating>(h->child("gate_outer"));
    const std::int64_t eo = outer->num_gates(), co = outer->capacity(kN);
    f.draws.policy_uniform_inner = rand({eo, kB, co}, 4000 + m);
  }
  return f;
}

std::vector<Case> cases() {
  std::vector<Case> out;
  const auto st = [](double cf, bool dropless, std::int64_t top_n) {
    return [=](core::Generator* gen) -> std::shared_ptr<moe::MoELayer> {
      nn::st::MoEOptions o;
      o.gating_top_n = top_n;
      o.capacity_factor_train = cf;
      o.min_expert_capacity = 2;
      o.dropless = dropless;
      o.expert_hidden_mult = 2.0;
      return std::make_shared<nn::st::MoE>(kDim, 8, o, core::TensorOptions{}, gen);
    };
  };
  out.push_back({"st_moe, gate noise, capacity drops", st(0.75, false, 2), st_args});
  out.push_back({"st_moe, gate noise, top-3, dropless", st(1.25, true, 3), st_args});
  out.push_back({"st_moe, gate noise, padded rows", st(1.0, false, 2), st_args, moe::RowLayout::padded});
  const auto lmoe_opt = [](double cf) {
    nn::lmoe::MoEOptions o;
    o.hidden_dim = 16;
    o.capacity_factor_train = cf;
    return o;
  };
  out.push_back({"lucidrains, random policy, capacity drops",
                 [=](core::Generator* gen) -> std::shared_ptr<moe::MoELayer> {
                   return std::make_shared<nn::lmoe::MoE>(kDim, 8, lmoe_opt(0.75), core::TensorOptions{}, gen);
                 },
                 lmoe_args});
  out.push_back({"hierarchical (2 x 4), random policy",
                 [=](core::Generator* gen) -> std::shared_ptr<moe::MoELayer> {
                   return std::make_shared<nn::lmoe::HeirarchicalMoE>(kDim, std::pair<std::int64_t, std::int64_t>{2, 4},
                                                                      lmoe_opt(1.25), core::TensorOptions{}, gen);
                 },
                 lmoe_args});
  return out;
}

// The expert-parallel sizes tested at world size W: W, and W / 2 (1 at W = 2).
std::vector<int> expert_parallel_sizes(int W) {
  std::vector<int> ps{W};
  if (W > 1) ps.push_back(W / 2);
  return ps;
}

void check_case(const Case& c, int P) {
  dist::ProcessGroup& world = dist::world();
  const int W = world.size(), r = world.rank();
  INFO("case: " << c.name << ", W = " << W << ", P = " << P << ", rank " << r);
  const auto loss_grad = [](int m) { return randn({kB, kN, kDim}, 5000 + m); };
  const auto input = [](int m) { return randn({kB, kN, kDim}, 6000 + m); };

  // The single-process layer: every micro-batch, gradients accumulated.
  core::Generator ref_gen(kModelSeed);
  auto ref = c.make(&ref_gen);
  ref->set_row_layout(c.layout);
  moe::MoEOutput ref_r;
  Variable ref_x_r;
  moe::RoutingStats ref_stats;
  for (int m = 0; m < W; ++m) {
    Variable x(input(m), true);
    moe::MoEOutput o = ref->forward(x, c.forward_args(*ref, m));
    ag::add(ag::sum(ag::mul(o.output, ag::constant(loss_grad(m)))), ag::sum(o.aux_loss)).backward();
    if (m == r) {
      ref_r = o;
      ref_x_r = x;
      ref_stats = ref->last_routing_stats();
    }
  }

  // The expert-parallel layer: this rank's micro-batch.
  auto ep = world.split(r / P, r, "expert-parallel group");
  auto replicas = world.split(r % P, r, "expert replicas");
  core::Generator gen(kModelSeed);
  auto layer = c.make(&gen);
  layer->set_row_layout(c.layout);
  layer->place_experts(ep);
  const moe::ExpertPlacement& pl = layer->placement();
  const std::int64_t X = layer->total_experts();
  CHECK(pl.count == X / P);
  CHECK(pl.first == (r % P) * (X / P));
  CHECK(pl.distributed() == (P > 1));
  Variable x(input(r), true);
  moe::MoEOutput o = layer->forward(x, c.forward_args(*layer, r));
  ag::add(ag::sum(ag::mul(o.output, ag::constant(loss_grad(r)))), ag::sum(o.aux_loss)).backward();

  CHECK(rel_diff(o.output.value(), ref_r.output.value()) <= 1e-6);
  CHECK(rel_diff(o.aux_loss.value(), ref_r.aux_loss.value()) <= 1e-6);
  CHECK(rel_diff(o.balance_loss.value(), ref_r.balance_loss.value()) <= 1e-6);
  CHECK(o.router_z_loss.defined() == ref_r.router_z_loss.defined());
  if (o.router_z_loss.defined()) CHECK(rel_diff(o.router_z_loss.value(), ref_r.router_z_loss.value()) <= 1e-6);
  CHECK(rel_diff(x.grad(), ref_x_r.grad()) <= 1e-5);
  CHECK(layer->last_routing_stats().tokens_per_expert == ref_stats.tokens_per_expert);  // over all X experts
  CHECK(layer->last_routing_stats().kept > 0);
  // Compact rows: this rank sends the other members the kept rows of their experts.
  if (c.layout != moe::RowLayout::padded) {
    std::int64_t others = 0;
    for (std::int64_t e = 0; e < X; ++e)
      if (e < pl.first || e >= pl.first + pl.count) others += ref_stats.tokens_per_expert[e];
    CHECK(layer->last_exchanged_rows() == (P > 1 ? others : 0));
  }
  if (P > 1) CHECK(layer->last_exchanged_rows() > 0);

  // Gradients, in named_parameters order on every rank (the same collectives everywhere).
  const auto names = layer->expert_parameter_names();
  const std::set<std::string> expert_names(names.begin(), names.end());
  int experts_seen = 0;
  for (const auto& [name, p] : layer->named_parameters()) {
    INFO("parameter " << name);
    core::Tensor g = grad_or_zeros(p);
    const core::Tensor want = grad_or_zeros(ref->parameter(name));
    if (expert_names.count(name)) {
      ++experts_seen;
      replicas->all_reduce(g);
      const core::Tensor slice = core::narrow(core::reshape(want, {X, -1}), 0, pl.first, pl.count);
      CHECK(rel_diff(core::reshape(g, {pl.count, -1}), slice) <= 1e-5);
    } else {
      world.all_reduce(g);
      CHECK(rel_diff(g, want) <= 1e-5);
    }
  }
  CHECK(experts_seen == static_cast<int>(names.size()));
}

}  // namespace

TEST_CASE("dist moe: expert-parallel layers equal the single-process layer on each rank's micro-batch") {
  const int W = dist::world().size();
  for (int P : expert_parallel_sizes(W))
    for (const Case& c : cases()) check_case(c, P);
}

TEST_CASE("dist moe: P must divide the expert count") {
  dist::ProcessGroup& world = dist::world();
  if (world.size() < 2) return;
  core::Generator gen(1);
  nn::st::MoE m(kDim, 3 * world.size() + 1, {}, {}, &gen);
  CHECK_THROWS_WITH_AS(m.place_experts(dist::world_ptr()), doctest::Contains("[st_moe.MoE] cannot place"), moegrad::Error);
}
