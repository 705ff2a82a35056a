// The one MoE pipeline (layers/moe/pipeline.h) and layer interface (moe_layer.h) in one process:
// the layers' forward is the old route -> dispatch_rows -> forward_rows -> combine_rows sequence
// bit for bit (outputs, losses, gradients), the pipeline's steps are that sequence, and expert
// placement: its errors, a sharded Experts computes its experts' rows as the full module does,
// and a sharded st::Experts' state_dict names its experts by their global index.
// The multi-process exchange is tested in tests/dist_moe/.
#include <doctest/doctest.h>

#include <functional>
#include <string>
#include <vector>

#include "dist/local_group.h"
#include "layers/layers.h"
#include "tests/test_random.h"

namespace ag = moegrad::ag;
namespace core = moegrad::core;
namespace dist = moegrad::dist;
namespace moe = moegrad::nn::moe;
namespace nn = moegrad::nn;
using doctest::Contains;
using moegrad::Error;
using moegrad::ag::Variable;

namespace {

using moegrad::testing::rand;
using moegrad::testing::randn;
// Bitwise equality of two f32 tensors (same shape).
bool same(const core::Tensor& a, const core::Tensor& b) {
  return a.shape() == b.shape() && a.to_vector<float>() == b.to_vector<float>();
}
double max_abs_diff(const core::Tensor& a, const core::Tensor& b) {
  REQUIRE(a.shape() == b.shape());
  return core::amax(core::abs(core::sub(core::to_dtype(a, core::DType::f64), core::to_dtype(b, core::DType::f64))))
      .item<double>();
}

// A group of `size` members seen from member `rank`, for the collective-free placement; its
// collectives are never reached in these tests.
class FakeGroup final : public dist::ProcessGroup {
 public:
  FakeGroup(int rank, int size) : rank_(rank), size_(size), ranks_(static_cast<std::size_t>(size)) {
    for (int i = 0; i < size; ++i) ranks_[static_cast<std::size_t>(i)] = i;
  }
  int rank() const override { return rank_; }
  int size() const override { return size_; }
  const std::vector<int>& world_ranks() const override { return ranks_; }
  std::string describe() const override { return "fake group (" + std::to_string(size_) + " ranks)"; }
  std::shared_ptr<dist::ProcessGroup> split(int, int, const std::string&) override { throw std::logic_error("split"); }
  void all_reduce(core::Tensor&, dist::Reduction) override { throw std::logic_error("all_reduce"); }
  core::Tensor all_gather(const core::Tensor&) override { throw std::logic_error("all_gather"); }
  core::Tensor all_to_all_v(const core::Tensor&, std::span<const std::int64_t>, std::span<const std::int64_t>) override {
    throw std::logic_error("all_to_all_v");
  }
  void broadcast(core::Tensor&, int) override { throw std::logic_error("broadcast"); }
  void barrier() override {}

 private:
  int rank_, size_;
  std::vector<int> ranks_;
};

// Outputs, losses and every gradient of one step: loss = sum(out * g) + aux.
struct Step {
  std::vector<std::pair<std::string, core::Tensor>> values;
};
Step run_step(nn::Module& m, const std::function<std::pair<Variable, Variable>(const Variable&)>& forward,
              const core::Shape& shape) {
  m.zero_grad();
  Variable x(randn(shape, 1), true);
  auto [out, aux] = forward(x);
  ag::add(ag::sum(ag::mul(out, ag::constant(randn(shape, 2)))), ag::sum(aux)).backward();
  Step s;
  s.values = {{"output", out.value()}, {"aux loss", aux.value()}, {"grad x", x.grad()}};
  for (const auto& [name, p] : m.named_parameters()) s.values.push_back({"grad " + name, p.grad()});
  return s;
}
void check_bitwise(const Step& a, const Step& b) {
  REQUIRE(a.values.size() == b.values.size());
  for (std::size_t i = 0; i < a.values.size(); ++i) {
    INFO(a.values[i].first);
    CHECK(same(a.values[i].second, b.values[i].second));
  }
}

// The sequence the layers ran before the pipeline, written out.
Variable old_sequence(const Variable& tokens, const moe::GateResult& g, bool straight_through,
                      const std::function<Variable(const Variable&, const core::Tensor&)>& experts) {
  const moe::RowMap rows = moe::expert_rows(g.routing, moe::RowLayout::automatic);
  Variable buffer = ag::dispatch_rows(tokens, rows.row, moe::dispatch_scale(g.weights, straight_through), rows.num_rows);
  return ag::combine_rows(experts(buffer, rows.offsets), rows.row, g.weights, /*distinct_rows=*/true);
}

moe::Draws st_draws(std::int64_t b, std::int64_t n, std::int64_t e, std::int64_t k) {
  moe::Draws d;
  d.noise_uniform = rand({b, n, e}, 11);
  d.route_uniform = rand({k, b, n}, 12);
  return d;
}

}  // namespace

TEST_CASE("moe pipeline: st_moe.MoE's forward is the old sequence, bit for bit") {
  nn::st::MoEOptions o;
  o.gating_top_n = 3;
  o.capacity_factor_train = 0.75;  // drops
  core::Generator gen(5);
  nn::st::MoE m(8, 6, o, {}, &gen);
  const moe::Draws d = st_draws(2, 12, 6, 3);
  const Step layer = run_step(m, [&](const Variable& x) {
    auto r = m.forward(x, {.noise_gates = true, .noise_mult = 0.5, .draws = d});
    return std::make_pair(r.output, r.aux_loss);
  }, {2, 12, 8});
  CHECK(m.last_routing_stats().dropped_fraction > 0.0);
  const Step old = run_step(m, [&](const Variable& x) {
    moe::GateResult g = m.gate()->route(x, true, 0.5, d);
    Variable out = old_sequence(ag::reshape(x, {24, 8}), g, g.straight_through,
                                [&](const Variable& r, const core::Tensor& off) { return m.experts()->forward_rows(r, off); });
    return std::make_pair(ag::reshape(out, {2, 12, 8}), ag::add(ag::mul(g.balance_loss, o.balance_loss_coef),
                                                              ag::mul(g.router_z_loss, o.router_z_loss_coef)));
  }, {2, 12, 8});
  check_bitwise(layer, old);
  // The convenience call is the same forward.
  const Step convenience = run_step(m, [&](const Variable& x) {
    auto r = m.forward(x, true, 0.5, d);
    return std::make_pair(r.output, r.aux_loss);
  }, {2, 12, 8});
  check_bitwise(layer, convenience);
}

TEST_CASE("moe pipeline: lucidrains MoE and HeirarchicalMoE are the old sequences, bit for bit") {
  nn::lmoe::MoEOptions o;
  o.hidden_dim = 12;
  o.capacity_factor_train = 0.75;
  core::Generator gen(6);
  moe::Draws d;
  d.policy_uniform = rand({2, 16}, 13);
  {
    nn::lmoe::MoE m(8, 4, o, {}, &gen);
    const Step layer = run_step(m, [&](const Variable& x) {
      auto r = m.forward(x, {.draws = d});
      CHECK(!r.router_z_loss.defined());
      CHECK(same(r.aux_loss.value(), core::mul(r.balance_loss.value(), o.loss_coef)));
      return std::make_pair(r.output, r.aux_loss);
    }, {2, 16, 8});
    const Step old = run_step(m, [&](const Variable& x) {
      moe::GateResult g = m.gate()->route(x, {}, d.policy_uniform);
      Variable out = old_sequence(ag::reshape(x, {32, 8}), g, false,
                                  [&](const Variable& r, const core::Tensor& off) { return m.experts()->forward_rows(r, off); });
      return std::make_pair(ag::reshape(out, {2, 16, 8}), ag::mul(g.balance_loss, o.loss_coef));
    }, {2, 16, 8});
    check_bitwise(layer, old);
  }
  d.policy_uniform_inner = rand({2, 2, 6}, 14);  // [eo, b, co]: co = max(int(16 * 0.75 / 2), 4)
  {
    nn::lmoe::HeirarchicalMoE m(8, {2, 3}, o, {}, &gen);
    const Step layer = run_step(m, [&](const Variable& x) {
      auto r = m.forward(x, {.draws = d});
      CHECK(same(r.aux_loss.value(), core::mul(r.balance_loss.value(), o.loss_coef)));
      return std::make_pair(r.output, r.aux_loss);
    }, {2, 16, 8});
    CHECK(m.total_experts() == 6);
    CHECK(m.last_routing_stats().tokens_per_expert.size() == 6);
    // The old forward: outer padded dispatch, the importance of each slot, the inner sequence
    // over the flat (eo, ei) experts, the outer combine.
    const Step old = run_step(m, [&](const Variable& x) {
      auto gate_outer = std::dynamic_pointer_cast<nn::lmoe::Top2Gating>(m.child("gate_outer"));
      auto gate_inner = std::dynamic_pointer_cast<nn::lmoe::Top2Gating>(m.child("gate_inner"));
      moe::GateResult go = gate_outer->route(x, {}, d.policy_uniform);
      const std::int64_t co = go.routing.capacity;
      const moe::RowMap outer_rows = moe::padded_rows(go.routing);
      Variable xo = ag::dispatch_rows(ag::reshape(x, {32, 8}), outer_rows.row, moe::dispatch_scale(go.weights, false),
                                      outer_rows.num_rows);
      const core::Tensor w = go.weights.value();
      const core::Tensor value = core::mul(
          core::add(core::to_dtype(core::gt(w, 0.5), w.dtype()), core::to_dtype(core::gt(w, 0.0), w.dtype())), 0.5);
      const std::int64_t R = outer_rows.num_rows;
      const core::Tensor spare = core::full(outer_rows.row.shape(), static_cast<double>(R), {core::DType::i64});
      const core::Tensor target = core::reshape(core::where(core::lt(outer_rows.row, 0.0), spare, outer_rows.row), {-1});
      core::Tensor importance = core::index_add(core::zeros({R + 1}), 0, target, core::reshape(value, {-1}));
      importance = core::reshape(core::narrow(importance, 0, 0, R), {2, 2, co});
      moe::GateResult gi = gate_inner->route(ag::reshape(xo, {2, 2, co, 8}), importance, d.policy_uniform_inner);
      Variable yo = old_sequence(xo, gi, false, [&](const Variable& r, const core::Tensor& off) {
        return m.experts()->forward_rows(r, off);
      });
      Variable out = ag::combine_rows(yo, outer_rows.row, go.weights, /*distinct_rows=*/true);
      return std::make_pair(ag::reshape(out, {2, 16, 8}), ag::mul(ag::add(go.balance_loss, gi.balance_loss), o.loss_coef));
    }, {2, 16, 8});
    check_bitwise(layer, old);
  }
}

TEST_CASE("moe pipeline: its steps are the old sequence, and without expert parallelism the exchanges are the identity") {
  nn::st::MoEOptions o;
  o.capacity_factor_train = 1.0;
  core::Generator gen(7);
  nn::st::MoE m(8, 4, o, {}, &gen);
  const moe::Draws d = st_draws(2, 10, 4, 2);
  const Variable x(randn({2, 10, 8}, 3), true);
  moe::GateResult g = m.gate()->route(x, false, 1.0, d);
  const moe::RowMap rows = moe::expert_rows(g.routing);
  for (const auto& placement : {moe::ExpertPlacement{}, m.placement(),
                                moe::ExpertPlacement{std::make_shared<dist::LocalGroup>("alone"), 4, 0, 4}}) {
    const moe::Pipeline p(g.routing, moe::RowLayout::automatic, placement);
    CHECK(!p.placement().distributed());
    CHECK(p.rows().offsets.to_vector<std::int64_t>() == rows.offsets.to_vector<std::int64_t>());
    CHECK(p.local_offsets().to_vector<std::int64_t>() == rows.offsets.to_vector<std::int64_t>());
    const Variable tokens = ag::reshape(x, {20, 8});
    const Variable scale = moe::dispatch_scale(g.weights, true);
    Variable buffer = p.dispatch(tokens, scale);
    CHECK(same(buffer.value(), ag::dispatch_rows(tokens, rows.row, scale, rows.num_rows).value()));
    Variable local = p.exchange(buffer);
    CHECK(local.impl() == buffer.impl());  // the identity: the same variable
    Variable y = m.experts()->forward_rows(local, p.local_offsets());
    CHECK(p.exchange_back(y).impl() == y.impl());
    CHECK(same(p.combine(y, g.weights).value(), ag::combine_rows(y, rows.row, g.weights, true).value()));
    CHECK(p.exchanged_rows() == 0);
    CHECK(p.received_rows() == 0);
  }
  const moe::Pipeline p(g.routing, moe::RowLayout::automatic, m.placement());
  CHECK_THROWS_WITH_AS(p.exchange(Variable(core::zeros({3, 8}))),
                       Contains("[moe.Pipeline] exchange takes the dispatched rows"), Error);
}

TEST_CASE("moe placement: P must divide the experts; the layer keeps its slice; once per layer") {
  core::Generator gen(8);
  nn::st::MoE st(8, 6, {}, {}, &gen);
  CHECK(st.placement().count == 6);
  CHECK(!st.placement().distributed());
  CHECK_THROWS_WITH_AS(st.place_experts(std::make_shared<FakeGroup>(0, 4)),
                       "[st_moe.MoE] cannot place 6 experts over the 4 ranks of fake group (4 ranks): the "
                       "expert-parallel size must divide the expert count",
                       Error);
  CHECK_THROWS_WITH_AS(st.place_experts(nullptr), "[st_moe.MoE] place_experts needs a process group", Error);
  nn::lmoe::HeirarchicalMoE h(8, {2, 3}, {}, {}, &gen);
  CHECK_THROWS_WITH_AS(h.place_experts(std::make_shared<FakeGroup>(1, 4)),
                       Contains("[lmoe.HeirarchicalMoE] cannot place 6 experts over the 4 ranks"), Error);

  st.place_experts(std::make_shared<FakeGroup>(2, 3));
  CHECK(st.placement().first == 4);
  CHECK(st.placement().count == 2);
  CHECK(st.placement().total == 6);
  CHECK(st.placement().distributed());
  CHECK(st.total_experts() == 6);
  CHECK(st.expert_parameter_names() ==
        std::vector<std::string>{"experts.w_in", "experts.b_in", "experts.mult_bias", "experts.w_out", "experts.b_out"});
  for (const auto& name : st.expert_parameter_names()) CHECK(st.parameter(name).size(0) == 2);
  CHECK_THROWS_WITH_AS(st.place_experts(std::make_shared<FakeGroup>(0, 2)),
                       Contains("[st_moe.MoE] experts are already placed over fake group (3 ranks)"), Error);

  h.place_experts(std::make_shared<FakeGroup>(1, 3));  // flat experts 2, 3 of (2 x 3)
  CHECK(h.expert_parameter_names() == std::vector<std::string>{"experts.w1", "experts.w2"});
  CHECK(h.parameter("experts.w1").shape() == core::Shape{2, 8, 32});
  CHECK(h.parameter("experts.w2").shape() == core::Shape{2, 32, 8});
  CHECK(h.experts()->full_shape("w1") == core::Shape{2, 3, 8, 32});

  // A group of one keeps every expert.
  nn::lmoe::MoE l(8, 4, {}, {}, &gen);
  l.place_experts(std::make_shared<dist::LocalGroup>("alone"));
  CHECK(l.placement().count == 4);
  CHECK(!l.placement().distributed());
  CHECK(l.parameter("experts.w1").shape() == core::Shape{4, 8, 32});
}

TEST_CASE("moe placement: a sharded st::Experts computes its experts' rows as the full module; state_dict by global index") {
  core::Generator g1(9), g2(9);
  nn::st::Experts full(8, 6, 2.0, {}, &g1), part(8, 6, 2.0, {}, &g2);
  part.keep_experts(2, 3);
  CHECK(part.sharded());
  CHECK(part.num_experts() == 6);
  CHECK(part.local_experts() == 3);
  CHECK(part.parameter("w_in").size(0) == 3);
  CHECK(part.parameter("w_in").value().owns_whole_storage());  // a copy: the other experts are freed
  // Rows per expert 3, 0, 4, 2, 5, 1: the slice for experts 2..4 is rows 3 .. 14.
  const core::Tensor off = core::from_vector<std::int64_t>({0, 3, 3, 7, 9, 14, 15}, {7});
  const Variable rows(randn({15, 8}, 4));
  const Variable y = full.forward_rows(rows, off);
  const core::Tensor local_off = core::from_vector<std::int64_t>({0, 4, 6, 11}, {4});
  const Variable y_part = part.forward_rows(ag::constant(core::narrow(rows.value(), 0, 3, 11)), local_off);
  CHECK(max_abs_diff(y_part.value(), core::narrow(y.value(), 0, 3, 11)) <= 1e-6);

  const nn::StateDict sd = part.state_dict(), full_sd = full.state_dict();
  std::vector<std::string> keys;
  for (const auto& [k, v] : sd) keys.push_back(k);
  CHECK(keys.size() == 15);
  CHECK(keys.front() == "experts.2.net.0.weight");
  CHECK(keys.back() == "experts.4.net.2.bias");
  for (const auto& [k, v] : sd) CHECK(same(v, full_sd.at(k)));
  CHECK(part.grad_dict().size() == 15);
  // Loading reads the experts held.
  nn::st::Experts other(8, 6, 2.0, {}, nullptr);
  other.keep_experts(2, 3);
  other.load_state_dict(sd);
  CHECK(same(other.parameter("w_out").value(), part.parameter("w_out").value()));

  CHECK_THROWS_WITH_AS(part.forward(Variable(core::zeros({1, 6, 2, 8}))),
                       "[st.Experts] holds experts [2, 5) of 6 only (expert parallelism): the dense forward [b, E, c, d] "
                       "needs every expert; use forward_rows",
                       Error);
  CHECK_THROWS_WITH_AS(part.forward_rows(rows, off), Contains("offsets must have local experts + 1 = 4 entries"), Error);
  CHECK_THROWS_WITH_AS(part.keep_experts(0, 1), Contains("[st.Experts] already holds experts [2, 5) only"), Error);
  CHECK_THROWS_WITH_AS(full.keep_experts(4, 3), "[st.Experts] cannot keep experts [4, 7) of 6", Error);
}

TEST_CASE("moe placement: a sharded lmoe::Experts (hierarchical weights flattened) computes its experts' rows") {
  core::Generator g1(10), g2(10);
  nn::lmoe::Experts full(8, {2, 3}, 16, nullptr, {}, &g1), part(8, {2, 3}, 16, nullptr, {}, &g2);
  part.keep_experts(1, 4);  // flat experts 1..4: across the outer boundary
  CHECK(part.parameter("w1").shape() == core::Shape{4, 8, 16});
  CHECK(part.parameter("w2").shape() == core::Shape{4, 16, 8});
  CHECK(same(part.parameter("w1").value(),
             core::narrow(core::reshape(full.parameter("w1").value(), {6, 8, 16}), 0, 1, 4)));
  const core::Tensor off = core::from_vector<std::int64_t>({0, 2, 5, 5, 9, 10, 12}, {7});
  const Variable rows(randn({12, 8}, 5));
  const Variable y = full.forward_rows(rows, off);
  const core::Tensor local_off = core::from_vector<std::int64_t>({0, 3, 3, 7, 8}, {5});
  const Variable y_part = part.forward_rows(ag::constant(core::narrow(rows.value(), 0, 2, 8)), local_off);
  CHECK(max_abs_diff(y_part.value(), core::narrow(y.value(), 0, 2, 8)) <= 1e-6);
  CHECK(part.state_dict().at("w1").shape() == core::Shape{4, 8, 16});
  CHECK_THROWS_WITH_AS(part.forward(Variable(core::zeros({2, 3, 5, 8}))),
                       Contains("[lmoe.Experts] holds experts [1, 5) of 6 only (expert parallelism)"), Error);
}

TEST_CASE("moe layers: moe_layers finds every MoE layer of a model with its path") {
  core::Generator gen(11);
  auto root = std::make_shared<nn::Module>();
  auto block = root->register_module("block", std::make_shared<nn::Module>());
  block->register_module("norm", std::make_shared<nn::RMSNorm>(8));
  block->register_module("moe", std::make_shared<nn::st::MoE>(8, 4, nn::st::MoEOptions{}, core::TensorOptions{}, &gen));
  root->register_module("top", std::make_shared<nn::lmoe::MoE>(8, 4, nn::lmoe::MoEOptions{}, core::TensorOptions{}, &gen));
  const auto layers = moe::moe_layers(root);
  REQUIRE(layers.size() == 2);
  CHECK(layers[0].first == "block.moe");
  CHECK(layers[1].first == "top");
  CHECK(layers[1].second->total_experts() == 4);
  auto alone = std::make_shared<nn::lmoe::MoE>(8, 2, nn::lmoe::MoEOptions{}, core::TensorOptions{}, &gen);
  REQUIRE(moe::moe_layers(alone).size() == 1);
  CHECK(moe::moe_layers(alone)[0].first.empty());
}
