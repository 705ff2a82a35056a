// Float64 gradient checks of each MoE module's whole forward (outputs and losses) with respect
// to its input and every parameter, with the routing held fixed: every random draw is injected
// (the same tensors in every evaluation), so only the continuous path varies. Routing is
// discrete; the seeds keep every perturbed evaluation on the same routing (the check would
// fail loudly otherwise). Straight-through estimators (st-moe's dispatch, MoERouter 'gumbel')
// are not derivatives of the forward value and are checked against PyTorch instead
// (tests/reference/test_parity_modules.cpp).
#include <doctest/doctest.h>

#include <functional>

#include "layers/layers.h"
#include "tests/autograd/gradcheck.h"

namespace ag = moegrad::ag;
namespace core = moegrad::core;
namespace moe = moegrad::nn::moe;
namespace nn = moegrad::nn;
using gradcheck::Input;
using moegrad::ag::Variable;

namespace {

const core::TensorOptions kF64{core::DType::f64};

// One vector of every output and loss, so a single check covers them all.
Variable flat(std::initializer_list<Variable> parts) {
  std::vector<Variable> v;
  for (const auto& p : parts) v.push_back(ag::reshape(p, {-1}));
  return ag::cat(v, 0);
}

void check_moe(const std::string& label, nn::Module& m, Input x, const std::function<Variable(const Variable&)>& run) {
  const auto params = m.named_parameters();
  std::vector<Input> specs{x};
  for (const auto& [name, p] : params) specs.push_back({p.shape()});
  gradcheck::check(
      label,
      [&](const std::vector<Variable>& in) {
        for (std::size_t i = 0; i < params.size(); ++i) m.set_parameter(params[i].first, in[i + 1]);
        return run(in[0]);
      },
      specs);
}

core::Tensor uniform(const core::Shape& s, std::uint64_t seed) {
  core::Generator g(seed);
  return core::rand(s, kF64, &g);
}

}  // namespace

TEST_CASE("moe gradcheck: lucidrains Top2Gating, every policy") {
  for (const char* policy : {"all", "none", "threshold", "random"}) {
    nn::lmoe::Top2GatingOptions o;
    o.second_policy_train = policy;
    o.second_threshold_train = 0.1;
    nn::lmoe::Top2Gating g(4, 3, o, kF64);
    const auto u = uniform({2, 6}, 7);
    check_moe(std::string("top2 gating ") + policy, g, {{2, 6, 4}}, [&](const Variable& x) {
      auto r = g.forward(x, {}, u);
      return flat({r.combine, r.balance_loss});
    });
  }
}

TEST_CASE("moe gradcheck: lucidrains Top2Gating with outer dims and importance") {
  nn::lmoe::Top2GatingOptions o;
  o.outer_expert_dims = {2};
  nn::lmoe::Top2Gating g(3, 3, o, kF64);
  const auto imp = core::from_vector<double>({1, 0.5, 0, 1, 1, 0.5, 1, 1, 0, 0.5, 1, 1}, {2, 1, 6});
  const auto u = uniform({2, 1, 6}, 8);
  check_moe("top2 gating outer + importance", g, {{2, 1, 6, 3}}, [&](const Variable& x) {
    auto r = g.forward(x, imp, u);
    return flat({r.combine, r.balance_loss});
  });
}

TEST_CASE("moe gradcheck: st-moe TopNGating (top-2, top-3, noise, differentiable top-k, eval)") {
  struct Case {
    const char* label;
    std::int64_t top_n;
    bool noise, difftopk, train;
  };
  for (const Case c : {Case{"top-2", 2, false, false, true}, Case{"top-3 noise", 3, true, false, true},
                       Case{"top-2 differentiable", 2, false, true, true}, Case{"top-3 eval", 3, false, false, false}}) {
    nn::st::TopNGatingOptions o;
    o.top_n = c.top_n;
    o.differentiable_topk = c.difftopk;
    o.threshold_train = {0.05};
    nn::st::TopNGating g(4, 4, o, kF64);
    g.train(c.train);
    moe::Draws d;
    d.noise_uniform = uniform({2, 6, 4}, 9);
    d.route_uniform = uniform({c.top_n, 2, 6}, 10);
    check_moe(std::string("topn gating ") + c.label, g, {{2, 6, 4}}, [&](const Variable& x) {
      auto r = g.forward(x, c.noise, 0.7, d);
      return flat({r.combine, r.balance_loss, r.router_z_loss});
    });
  }
}

TEST_CASE("moe gradcheck: lucidrains MoE and HeirarchicalMoE") {
  nn::lmoe::MoEOptions o;
  o.hidden_dim = 5;
  o.activation = std::make_shared<nn::GELU>();
  nn::lmoe::MoE m(4, 3, o, kF64);
  moe::Draws d;
  d.policy_uniform = uniform({2, 6}, 11);
  check_moe("lmoe MoE", m, {{2, 6, 4}}, [&](const Variable& x) {
    auto r = m.forward(x, {.draws = d});
    return flat({r.output, r.aux_loss});
  });

  nn::lmoe::HeirarchicalMoE h(3, {2, 2}, o, kF64);
  moe::Draws dh;
  dh.policy_uniform = uniform({1, 8}, 12);
  const std::int64_t co = nn::moe::expert_capacity(8, 1.25, 2, 4);
  dh.policy_uniform_inner = uniform({2, 1, co}, 13);
  check_moe("lmoe HeirarchicalMoE", h, {{1, 8, 3}}, [&](const Variable& x) {
    auto r = h.forward(x, {.draws = dh});
    return flat({r.output, r.aux_loss});
  });
}

TEST_CASE("moe gradcheck: st-moe MoE and SparseMoEBlock (dispatch without straight-through)") {
  nn::st::MoEOptions o;
  o.expert_hidden_mult = 1.5;  // hidden int(4 * 1.5 * 2 / 3) = 4
  o.gating_top_n = 3;
  o.straight_through_dispatch_tensor = false;
  o.threshold_train = {0.05};
  auto m = std::make_shared<nn::st::MoE>(4, 4, o, kF64);
  moe::Draws d;
  d.noise_uniform = uniform({2, 5, 4}, 14);
  d.route_uniform = uniform({3, 2, 5}, 15);
  check_moe("st MoE top-3 noise", *m, {{2, 5, 4}}, [&](const Variable& x) {
    auto r = m->forward(x, true, 0.5, d);
    return flat({r.output, r.aux_loss, r.balance_loss, r.router_z_loss});
  });
  o.gating_top_n = 2;
  o.differentiable_topk = true;
  auto inner = std::make_shared<nn::st::MoE>(4, 3, o, kF64);
  nn::st::SparseMoEBlock block(inner, true, true);
  moe::Draws db;
  db.route_uniform = uniform({2, 1, 5}, 16);
  check_moe("st SparseMoEBlock, differentiable top-k", block, {{1, 5, 4}}, [&](const Variable& x) {
    auto r = block.forward(x, false, 1.0, db);
    return flat({r.output, r.aux_loss});
  });
}

TEST_CASE("moe gradcheck: zeta MoERouter softmax and st-moe Experts") {
  nn::zeta::MoERouter r(4, 3, {5, 2}, "softmax", kF64);
  check_moe("router softmax with hidden layers", r, {{2, 3, 4}}, [&](const Variable& x) { return r.forward(x); });
  nn::st::Experts e(3, 2, 2.0, kF64);  // hidden int(3 * 2 * 2 / 3) = 4
  check_moe("st Experts [b, e, c, d]", e, {{2, 2, 3, 3}}, [&](const Variable& x) { return e.forward(x); });
}
