// Reference parity of every seed module through the layer-spec factory (train/module_spec.h,
// which `moegrad layer` uses too): each fixture's module is built from its constructor
// arguments, loads the PyTorch weights strictly, replays the recorded random draws, and must
// match PyTorch's outputs and losses (rtol 1e-5), discrete routing exactly (dispatch != 0),
// and the gradients of the fixture's scalar loss for x and every parameter (rtol 1e-4).
#include <doctest/doctest.h>

#include <set>

#include "tests/reference/fixture.h"
#include "train/module_spec.h"

namespace ag = moegrad::ag;
namespace core = moegrad::core;
namespace test = moegrad::test;
namespace train = moegrad::train;

namespace {

constexpr double kOutputRtol = 1e-5, kGradRtol = 1e-4;

// Absolute floor for elements near zero: a small fraction of the tensor's largest magnitude.
double atol_for(const core::Tensor& expected, double rel) {
  const double scale = expected.numel() ? core::amax(core::abs(core::to_dtype(expected, core::DType::f64))).item<double>() : 0.0;
  return rel * std::max(scale, 1e-3);
}

std::set<std::string>& covered() {
  static std::set<std::string> names;
  return names;
}

bool register_fixture(const char* name) { return covered().insert(name).second; }

void check_fixture(const std::string& name) {
  const test::Fixture fx = test::load_fixture(name);
  INFO("fixture ", name, " (", fx.module, ", ", fx.mode, ")");
  auto spec = train::SpecModule::create(fx.module, fx.args);
  spec->module().train(fx.mode == "train");
  spec->module().load_state_dict(fx.model, /*strict=*/true);

  train::NamedTensors inputs;
  for (const auto& input : train::SpecModule::input_names())
    if (fx.has(input)) inputs[input] = fx.at(input);
  ag::Variable x(fx.at("x"), /*requires_grad=*/true);
  const train::NamedVariables outs = spec->forward(x, inputs, fx.forward);

  std::set<std::string> produced;
  for (const auto& [key, value] : outs) {
    produced.insert(key);
    if (!fx.has(key)) continue;
    const core::Tensor& want = fx.at(key);
    if (key == "dispatch")  // routing decisions exactly, values (straight-through 1 - ulp) closely
      test::check_equal("dispatch != 0", core::ne(value.value(), 0.0), core::ne(want, 0.0));
    test::check_close(key, value.value(), want, kOutputRtol, atol_for(want, 1e-6));
  }
  for (const auto& out : fx.outputs.as_array()) {
    INFO("output ", out.as_string());
    CHECK(produced.count(out.as_string()) == 1);
  }

  ag::Variable loss = train::spec_loss(*spec, outs, fx.at("grad_output"));
  loss.backward();
  const auto grads = spec->module().grad_dict();
  for (const auto& [key, want] : fx.grads) {
    const core::Tensor got = key == "x" ? x.grad() : grads.at(key);
    REQUIRE_MESSAGE(got.defined(), "no gradient for ", key);
    test::check_close("grad/" + key, got, want, kGradRtol, atol_for(want, 1e-5));
  }
  CHECK(grads.size() + 1 == fx.grads.size());  // every parameter and x, nothing else
}

}  // namespace

#define PARITY_CAT2(a, b) a##b
#define PARITY_CAT(a, b) PARITY_CAT2(a, b)
#define PARITY(name)                                                                   \
  [[maybe_unused]] static const bool PARITY_CAT(parity_registered_, __LINE__) = register_fixture(name); \
  TEST_CASE("parity: " name) { check_fixture(name); }

PARITY("lmoe_experts")
PARITY("lmoe_experts_tuple")
PARITY("lmoe_top2gating_all_train")
PARITY("lmoe_top2gating_none_eval")
PARITY("lmoe_top2gating_threshold_train")
PARITY("lmoe_top2gating_random_train")
PARITY("lmoe_top2gating_random_eval")
PARITY("lmoe_top2gating_importance")
PARITY("lmoe_top2gating_outer")
PARITY("lmoe_moe_train")
PARITY("lmoe_moe_eval")
PARITY("lmoe_hmoe_train")
PARITY("st_topn_top2_train")
PARITY("st_topn_top2_noise_train")
PARITY("st_topn_top3_noise_train")
PARITY("st_topn_top2_difftopk_train")
PARITY("st_topn_top3_difftopk_noise_train")
PARITY("st_topn_top3_capdrop_train")
PARITY("st_topn_top2_nost_train")
PARITY("st_topn_top2_eval")
PARITY("st_topn_top3_noise_eval")
PARITY("st_moe_train")
PARITY("st_moe_top3_difftopk_train")
PARITY("st_moe_eval")
PARITY("st_block_train")
PARITY("st_expert")
PARITY("st_expert_prenorm")
PARITY("st_expert_prenorm_nomultbias")
PARITY("zeta_experts")
PARITY("zeta_experts_bcast")
PARITY("zeta_router_softmax")
PARITY("zeta_router_softmax_hidden")
PARITY("zeta_router_gumbel")
PARITY("zeta_topn_min2_noise_train")
PARITY("zeta_topn_min8_eval")
PARITY("zeta_topn_min5_difftopk_train")

TEST_CASE("parity: every fixture has a parity test") {
  for (const auto& name : test::fixture_names())
    if (!covered().count(name)) FAIL_CHECK("fixture ", name, " has no PARITY entry in tests/reference/test_parity_modules.cpp");
}
