// MoE layers: routing rules, the fast path against the dense dispatch/combine formulation,
// routing statistics, dropless mode, edge cases and bad input.
#include <doctest/doctest.h>

#include <cmath>

#include "layers/layers.h"

namespace ag = moegrad::ag;
namespace core = moegrad::core;
namespace moe = moegrad::nn::moe;
namespace nn = moegrad::nn;
using doctest::Contains;
using moegrad::Error;
using moegrad::ag::Variable;

namespace {

core::Tensor randn(const core::Shape& s, std::uint64_t seed, core::DType dt = core::DType::f32) {
  core::Generator g(seed);
  return core::randn(s, {dt}, &g);
}
core::Tensor rand(const core::Shape& s, std::uint64_t seed) {
  core::Generator g(seed);
  return core::rand(s, {}, &g);
}
double max_abs_diff(const core::Tensor& a, const core::Tensor& b) {
  REQUIRE(a.shape() == b.shape());
  return core::amax(core::abs(core::sub(core::to_dtype(a, core::DType::f64), core::to_dtype(b, core::DType::f64))))
      .item<double>();
}

// The originals' dense formulation: EI[b, e, c, :] = sum_n D[b, n, e, c] x[b, n, :],
// out[b, n, :] = sum_{e, c} C[b, n, e, c] EO[b, e, c, :].
Variable dense_dispatch_x(const Variable& x, const Variable& D) {
  const auto b = x.size(0), n = x.size(1), e = D.size(2), c = D.size(3);
  return ag::reshape(ag::matmul(ag::transpose(ag::reshape(D, {b, n, e * c}), 1, 2), x), {b, e, c, x.size(2)});
}
Variable dense_combine_y(const Variable& eo /*[b, e, c, d]*/, const Variable& C) {
  const auto b = C.size(0), n = C.size(1), e = C.size(2), c = C.size(3);
  return ag::matmul(ag::reshape(C, {b, n, e * c}), ag::reshape(eo, {b, e * c, eo.size(3)}));
}

}  // namespace

TEST_CASE("moe: expert capacity follows the originals") {
  CHECK(moe::expert_capacity(10, 1.25, 4, 4) == 4);   // int(3.125) = 3 -> min 4
  CHECK(moe::expert_capacity(256, 1.25, 8, 4) == 40);
  CHECK(moe::expert_capacity(2, 1.25, 4, 4) == 4);    // shorter than min capacity: cap > n
  CHECK(moe::expert_capacity(12, 0.5, 4, 2) == 2);    // zeta's min_expert_capacity binds
  CHECK(moe::expert_capacity(100, 2.0, 4, 4) == 50);
  CHECK_THROWS_WITH_AS(moe::expert_capacity(10, 1.0, 4, 0), Contains("[expert_capacity] min_expert_capacity"), Error);
}

TEST_CASE("moe: slots are choice-major with st-moe's cumulative offset") {
  // One group of 4 tokens, 3 choices, 3 experts, capacity 3.
  const auto ex = core::from_vector<std::int64_t>({0, 1, 2,  0, 2, 1,  1, 0, 2,  0, 1, 2}, {4, 3});
  auto r = moe::route_tokens(ex, {}, 1, 4, 3, 3);
  // First choices: expert 0 gets tokens 0, 1, 3 (slots 0..2), expert 1 token 2.
  // Second choices start after the kept first choices of the same expert: expert 1: token 0 ->
  // slot 1, token 3 -> slot 2; expert 2: token 1 -> 0; expert 0: token 2 -> slot 3 (dropped).
  // Third choices: expert 2: tokens 0, 2, 3 -> slots 1, 2, 3 (dropped); expert 1: token 1 -> 3 (dropped).
  CHECK(r.position.to_vector<std::int64_t>() == std::vector<std::int64_t>{0, 1, 1, 1, 0, 3, 0, 3, 2, 2, 2, 3});
  const auto stats = moe::routing_stats(r);
  CHECK(stats.tokens_per_expert == std::vector<std::int64_t>{3, 3, 3});
  CHECK(stats.routed == 12);
  CHECK(stats.kept == 9);
  CHECK(stats.dropped_fraction == doctest::Approx(0.25));
  CHECK(stats.dead_experts == 0);
  CHECK(stats.max_load_over_mean == doctest::Approx(1.0));
  const auto rows = moe::compact_rows(r);
  CHECK(rows.offsets.to_vector<std::int64_t>() == std::vector<std::int64_t>{0, 3, 6, 9});
  CHECK(rows.row.to_vector<std::int64_t>() == std::vector<std::int64_t>{0, 4, 7, 1, 6, -1, 3, -1, 8, 2, 5, -1});
  // Inactive choices take no slot.
  const auto active = core::from_vector<std::uint8_t>({1, 0, 0, 1, 0, 0, 1, 0, 0, 1, 0, 0}, {4, 3});
  auto r1 = moe::route_tokens(ex, active, 1, 4, 3, 3);
  CHECK(r1.position.to_vector<std::int64_t>() == std::vector<std::int64_t>{0, -1, -1, 1, -1, -1, 0, -1, -1, 2, -1, -1});
  CHECK(moe::routing_stats(r1).dead_experts == 1);
}

TEST_CASE("moe: lucidrains MoE fast path equals the dense dispatch/combine einsums") {
  nn::lmoe::MoEOptions o;
  o.hidden_dim = 12;
  o.capacity_factor_train = 0.75;  // force drops
  nn::lmoe::MoE m(8, 4, o);
  moe::Draws d;
  d.policy_uniform = rand({3, 10}, 5);
  Variable x(randn({3, 10, 8}, 1), true);
  auto fast = m.forward(x, {.draws = d});
  CHECK(m.last_routing_stats().dropped_fraction > 0.0);
  ag::sum(ag::mul(fast.output, ag::constant(randn({3, 10, 8}, 2)))).backward();
  const auto gx_fast = core::clone(x.grad());
  const auto gw_fast = core::clone(m.gate()->parameter("w_gating").grad());
  const auto g1_fast = core::clone(m.experts()->parameter("w1").grad());
  x.zero_grad();
  m.zero_grad();

  auto dense = m.gate()->forward(x, {}, d.policy_uniform);
  Variable ei = dense_dispatch_x(x, dense.dispatch);  // [b, e, c, d]
  const auto b = x.size(0), e = dense.dispatch.size(2), c = dense.dispatch.size(3);
  Variable eo = m.experts()->forward(ag::reshape(ag::permute(ei, {1, 0, 2, 3}), {e, b * c, 8}));
  Variable out = dense_combine_y(ag::permute(ag::reshape(eo, {e, b, c, 8}), {1, 0, 2, 3}), dense.combine);
  CHECK(max_abs_diff(fast.output.value(), out.value()) < 1e-5);
  ag::sum(ag::mul(out, ag::constant(randn({3, 10, 8}, 2)))).backward();
  CHECK(max_abs_diff(gx_fast, x.grad()) < 1e-5);
  CHECK(max_abs_diff(gw_fast, m.gate()->parameter("w_gating").grad()) < 1e-5);
  CHECK(max_abs_diff(g1_fast, m.experts()->parameter("w1").grad()) < 1e-5);
}

TEST_CASE("moe: st-moe MoE fast path equals the dense formulation, with and without straight-through") {
  for (bool st : {true, false}) {
    CAPTURE(st);
    nn::st::MoEOptions o;
    o.gating_top_n = 3;
    o.straight_through_dispatch_tensor = st;
    o.capacity_factor_train = 1.0;
    nn::st::MoE m(6, 4, o);
    moe::Draws d;
    d.noise_uniform = rand({2, 9, 4}, 3);
    d.route_uniform = rand({3, 2, 9}, 4);
    Variable x(randn({2, 9, 6}, 5), true);
    const auto g = randn({2, 9, 6}, 6);
    auto fast = m.forward(x, true, 1.0, d);
    ag::add(ag::sum(ag::mul(fast.output, ag::constant(g))), fast.aux_loss).backward();
    const auto gx = core::clone(x.grad());
    const auto grads = nn::clone(m.grad_dict());
    x.zero_grad();
    m.zero_grad();

    auto dense = m.gate()->forward(x, true, 1.0, d);
    Variable eo = m.experts()->forward(dense_dispatch_x(x, dense.dispatch));
    Variable out = dense_combine_y(eo, dense.combine);
    Variable total = ag::add(ag::mul(dense.balance_loss, 1e-2), ag::mul(dense.router_z_loss, 1e-3));
    CHECK(max_abs_diff(fast.output.value(), out.value()) < 1e-5);
    CHECK(max_abs_diff(fast.aux_loss.value(), total.value()) < 1e-7);
    ag::add(ag::sum(ag::mul(out, ag::constant(g))), total).backward();
    CHECK(max_abs_diff(gx, x.grad()) < 1e-5);
    for (const auto& [key, value] : m.grad_dict()) {
      CAPTURE(key);
      CHECK(max_abs_diff(grads.at(key), value) < 1e-5);
    }
  }
}

TEST_CASE("moe: all tokens to one expert; idle experts get zero gradients, not missing ones") {
  nn::st::MoEOptions o;
  o.threshold_train = {1e9};  // no second choices
  nn::st::MoE m(4, 3, o);
  {
    ag::NoGradGuard ng;
    core::fill_(m.gate()->parameter("to_gates.weight").value(), 0.0);
    core::fill_(core::select(m.gate()->parameter("to_gates.weight").value(), 0, 0), 5.0);
  }
  Variable x(core::add(core::abs(randn({2, 6, 4}, 7)), 0.1), true);
  auto r = m.forward(x);
  const auto& stats = m.last_routing_stats();
  CHECK(stats.tokens_per_expert == std::vector<std::int64_t>{8, 0, 0});  // capacity 4 per sequence
  CHECK(stats.dead_experts == 2);
  CHECK(stats.dropped_fraction == doctest::Approx(4.0 / 12.0));
  CHECK(stats.max_load_over_mean == doctest::Approx(3.0));
  ag::add(ag::sum(r.output), r.aux_loss).backward();
  const auto grads = m.grad_dict();
  for (const char* key : {"experts.experts.1.net.0.weight", "experts.experts.2.net.2.bias"}) {
    CAPTURE(key);
    CHECK(core::amax(core::abs(grads.at(key))).item<double>() == 0.0);
  }
  CHECK(core::amax(core::abs(grads.at("experts.experts.0.net.0.weight"))).item<double>() > 0.0);
  // Dropped tokens pass nothing through the layer: their output rows are zero.
  CHECK(core::amax(core::abs(core::select(core::select(r.output.value(), 0, 1), 0, 5))).item<double>() == 0.0);
}

TEST_CASE("moe: dropless mode keeps every routed choice") {
  nn::st::MoEOptions o;
  o.dropless = true;
  o.capacity_factor_train = 0.1;  // ignored
  nn::st::MoE m(4, 4, o);
  auto r = m.forward(ag::constant(randn({2, 16, 4}, 8)));
  CHECK(m.last_routing_stats().dropped_fraction == 0.0);
  CHECK(m.last_routing_stats().kept == m.last_routing_stats().routed);
  CHECK(m.gate()->capacity(16) == 16);
  nn::lmoe::MoEOptions lo;
  lo.dropless = true;
  lo.second_policy_train = "all";
  nn::lmoe::MoE lm(4, 3, lo);
  lm.forward(ag::constant(randn({1, 20, 4}, 9)));
  CHECK(lm.last_routing_stats().kept == 40);
}

TEST_CASE("moe: batch 1, sequence shorter than min capacity, k = e, eval losses") {
  nn::st::MoEOptions o;
  o.gating_top_n = 4;
  nn::st::MoE m(4, 4, o);
  auto r = m.forward(ag::constant(randn({1, 2, 4}, 10)));
  CHECK(r.output.shape() == core::Shape{1, 2, 4});
  CHECK(m.gate()->capacity(2) == 4);
  CHECK(m.last_routing_stats().dropped_fraction == 0.0);
  CHECK(r.balance_loss.dim() == 0);
  m.eval();
  auto e = m.forward(ag::constant(randn({1, 2, 4}, 10)));
  CHECK(e.balance_loss.shape() == core::Shape{1});  // the originals' (1,) zeros in eval
  CHECK(e.router_z_loss.value().item<double>() == 0.0);
  nn::st::TopNGatingOptions one;
  one.top_n = 1;  // the originals forbid it; allowed here
  nn::st::TopNGating g(4, 3, one);
  auto d = g.forward(ag::constant(randn({2, 5, 4}, 11)));
  CHECK(d.combine.shape() == core::Shape{2, 5, 3, 4});
  CHECK(core::sum(core::ne(d.dispatch.value(), 0.0)).item<double>() <= 10.0);
}

TEST_CASE("moe: bad input gives errors that name the problem") {
  nn::st::TopNGatingOptions o;
  o.top_n = 5;
  CHECK_THROWS_WITH_AS(nn::st::TopNGating(4, 4, o), Contains("top_n must be in [1, num_gates = 4], got 5"), Error);
  o.top_n = 3;
  o.threshold_train = {0.1, 0.2, 0.3};
  CHECK_THROWS_WITH_AS(nn::st::TopNGating(4, 4, o), Contains("threshold_train needs 1 value or top_n - 1 = 2 values, got 3"),
                       Error);
  nn::lmoe::Top2GatingOptions lo;
  lo.second_policy_train = "sometimes";
  CHECK_THROWS_WITH_AS(nn::lmoe::Top2Gating(4, 4, lo), Contains("unknown second_policy_train 'sometimes'"), Error);
  CHECK_THROWS_WITH_AS(nn::zeta::MoERouter(4, 3, {}, "sparsemax"), Contains("unknown mechanism 'sparsemax'"), Error);

  nn::st::MoE m(4, 4);
  CHECK_THROWS_WITH_AS(m.forward(ag::constant(randn({2, 4}, 1))), Contains("[st_moe.MoE] input must be [batch, seq, dim = 4], got f32(2, 4)"), Error);
  CHECK_THROWS_WITH_AS(m.forward(ag::constant(randn({2, 3, 5}, 1))), Contains("got f32(2, 3, 5)"), Error);
  CHECK_THROWS_WITH_AS(m.forward(ag::constant(randn({2, 3, 4}, 1, core::DType::f64))), Contains("[st_moe.MoE]"), Error);
  auto bad = randn({2, 3, 4}, 1);
  core::fill_(core::select(core::select(bad, 0, 1), 0, 2), NAN);
  CHECK_THROWS_WITH_AS(m.forward(ag::constant(bad)), Contains("[TopNGating] gate logits (the input or to_gates.weight has NaN/Inf) contains NaN or Inf"), Error);
  moe::Draws d;
  d.route_uniform = rand({2, 3, 3}, 2);
  CHECK_THROWS_WITH_AS(m.forward(ag::constant(randn({2, 3, 4}, 1)), false, 1.0, d),
                       Contains("injected route_uniform must have shape (2, 2, 3), got f32(2, 3, 3)"), Error);

  nn::lmoe::Top2Gating g(4, 3);
  CHECK_THROWS_WITH_AS(g.forward(ag::constant(randn({2, 3, 4}, 1)), core::ones({2, 4})),
                       Contains("importance must be (2, 3), got f32(2, 4)"), Error);
  nn::lmoe::HeirarchicalMoE h(4, {2, 2});
  CHECK_THROWS_WITH_AS(h.forward(ag::constant(randn({3, 4}, 1))), Contains("[lmoe.HeirarchicalMoE] input must be"), Error);

  // A checkpoint with a missing expert and a mis-shaped gate names both keys.
  auto sd = nn::clone(m.state_dict());
  nn::StateDict broken;
  for (const auto& [k, v] : sd) {
    if (k.rfind("experts.experts.3.", 0) == 0) continue;
    broken.insert(k, k == "gate.to_gates.weight" ? core::zeros({4, 5}) : v);
  }
  CHECK_THROWS_WITH_AS(m.load_state_dict(broken), Contains("experts.experts.3.net.0.weight"), Error);
  CHECK_THROWS_WITH_AS(m.load_state_dict(broken), Contains("gate.to_gates.weight"), Error);
}

TEST_CASE("moe: st-moe MoE exposes PyTorch's keys over stacked storage") {
  nn::st::MoE m(4, 2);
  const auto keys = m.state_dict().keys();
  // PyTorch's order: a module's own parameters and buffers, then its children's.
  const std::vector<std::string> want{"gate.threshold_train", "gate.threshold_eval", "gate.to_gates.weight",
                                      "experts.experts.0.net.0.weight", "experts.experts.0.net.0.bias",
                                      "experts.experts.0.net.1.mult_bias", "experts.experts.0.net.2.weight",
                                      "experts.experts.0.net.2.bias", "experts.experts.1.net.0.weight",
                                      "experts.experts.1.net.0.bias", "experts.experts.1.net.1.mult_bias",
                                      "experts.experts.1.net.2.weight", "experts.experts.1.net.2.bias"};
  CHECK(keys == want);
  CHECK(m.state_dict().at("experts.experts.1.net.0.weight").shape() == core::Shape{20, 4});  // 2h, h = int(4 * 4 * 2 / 3)
  // Loading a per-expert key writes into the stacked weight.
  auto sd = nn::clone(m.state_dict());
  core::fill_(sd.at("experts.experts.1.net.2.bias"), 3.0);
  m.load_state_dict(sd);
  CHECK(core::select(m.experts()->parameter("b_out").value(), 0, 1).to_vector<float>() == std::vector<float>(4, 3.0f));
}

TEST_CASE("moe: per-token routing is recorded only when asked, for every layer kind") {
  const auto x = ag::constant(randn({2, 6, 4}, 21));
  nn::st::MoEOptions so;
  so.gating_top_n = 3;
  nn::st::MoE st(4, 4, so);
  nn::lmoe::MoE lm(4, 4);
  nn::lmoe::HeirarchicalMoE h(4, {2, 3});
  struct Case {
    moe::MoELayer* layer;
    std::int64_t k, experts;
  };
  for (const Case& c : {Case{&st, 3, 4}, Case{&lm, 2, 4}, Case{&h, 4, 6}}) {
    c.layer->forward(x);
    CHECK(!c.layer->last_token_routing().defined());  // off by default: the training path records nothing
    c.layer->record_token_routing(true);
    c.layer->forward(x);
    const moe::TokenRouting& r = c.layer->last_token_routing();
    REQUIRE(r.defined());
    CHECK(r.experts.shape() == core::Shape{2, 6, c.k});
    CHECK(r.weights.shape() == core::Shape{2, 6, c.k});
    CHECK(r.dropped.shape() == core::Shape{2, 6, c.k});
    // The kept choices per expert are the layer's own statistics; weights are positive exactly there.
    const auto e = r.experts.to_vector<std::int64_t>();
    const auto w = r.weights.to_vector<float>();
    const auto d = r.dropped.to_vector<std::uint8_t>();
    std::vector<std::int64_t> kept(static_cast<std::size_t>(c.experts), 0);
    for (std::size_t i = 0; i < e.size(); ++i) {
      CHECK((e[i] >= -1 && e[i] < c.experts));
      const bool is_kept = e[i] >= 0 && d[i] == 0;
      CHECK((w[i] > 0) == is_kept);
      if (is_kept) ++kept[static_cast<std::size_t>(e[i])];
    }
    CHECK(kept == c.layer->last_routing_stats().tokens_per_expert);
    c.layer->record_token_routing(false);
    CHECK(!c.layer->last_token_routing().defined());
  }
}
