// Reference parity of every seed module through the layer-spec factory (train/module_spec.h,
// which `moegrad layer` uses too): each fixture's module is built from its constructor
// arguments, loads the PyTorch weights strictly, replays the recorded random draws, and must
// match PyTorch's outputs and losses (rtol 1e-5), discrete routing exactly (dispatch != 0),
// and the gradients of the fixture's scalar loss for x and every parameter (rtol 1e-4).
// "cuda parity: <fixture>" runs the same module on cuda:0 and compares it with the CPU run and
// with PyTorch (it skips itself where no GPU is present).
#include <doctest/doctest.h>

#include <map>
#include <set>

#include "core/build_info.h"

#include "tests/reference/fixture.h"
#include "train/module_spec.h"
#include "tests/cuda/cuda_test.h"

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

// One run of a fixture's module on `device`: outputs and the gradients of x and every parameter
// (keys as in the fixture), copied back to the host.
struct Run {
  std::map<std::string, core::Tensor> outputs, grads;
};

Run run_fixture(const test::Fixture& fx, core::Device device) {
  auto spec = train::SpecModule::create(fx.module, fx.args);
  spec->module().train(fx.mode == "train");
  spec->module().load_state_dict(fx.model, /*strict=*/true);
  spec->module().to(device);

  train::NamedTensors inputs;
  for (const auto& input : train::SpecModule::input_names())
    if (fx.has(input)) inputs[input] = core::to_device(fx.at(input), device);
  ag::Variable x(core::to_device(fx.at("x"), device), /*requires_grad=*/true);
  const train::NamedVariables outs = spec->forward(x, inputs, fx.forward);
  Run run;
  for (const auto& [key, value] : outs) {
    CHECK_MESSAGE(value.value().device() == device, key, " is on ", value.value().device().str());
    run.outputs[key] = core::to_device(value.value(), core::Device::cpu());
  }
  ag::Variable loss = train::spec_loss(*spec, outs, core::to_device(fx.at("grad_output"), device));
  loss.backward();
  for (const auto& [key, grad] : spec->module().grad_dict()) run.grads[key] = core::to_device(grad, core::Device::cpu());
  if (x.grad().defined()) run.grads["x"] = core::to_device(x.grad(), core::Device::cpu());
  return run;
}

// A run against reference values (the PyTorch fixture, or the CPU run for the CUDA one).
void check_run(const Run& run, const std::map<std::string, core::Tensor>& want_outputs,
               const std::map<std::string, core::Tensor>& want_grads) {
  for (const auto& [key, want] : want_outputs) {
    if (!run.outputs.count(key)) continue;
    const core::Tensor& got = run.outputs.at(key);
    if (key == "dispatch")  // routing decisions exactly, values (straight-through 1 - ulp) closely
      test::check_equal("dispatch != 0", core::ne(got, 0.0), core::ne(want, 0.0));
    test::check_close(key, got, want, kOutputRtol, atol_for(want, 1e-6));
  }
  for (const auto& [key, want] : want_grads) {
    REQUIRE_MESSAGE(run.grads.count(key), "no gradient for ", key);
    test::check_close("grad/" + key, run.grads.at(key), want, kGradRtol, atol_for(want, 1e-5));
  }
}

void check_fixture(const std::string& name) {
  const test::Fixture fx = test::load_fixture(name);
  INFO("fixture ", name, " (", fx.module, ", ", fx.mode, ")");
  const Run run = run_fixture(fx, core::Device::cpu());
  std::map<std::string, core::Tensor> want_outputs;
  for (const auto& out : fx.outputs.as_array()) {
    INFO("output ", out.as_string());
    CHECK(run.outputs.count(out.as_string()) == 1);
  }
  for (const auto& [key, value] : run.outputs)
    if (fx.has(key)) want_outputs[key] = fx.at(key);
  const std::map<std::string, core::Tensor> want_grads(fx.grads.begin(), fx.grads.end());
  check_run(run, want_outputs, want_grads);
  CHECK(run.grads.size() == fx.grads.size());  // every parameter and x, nothing else
}

// The same fixture on cuda:0 against the CPU run (the oracle) and against PyTorch's values.
void check_fixture_cuda(const std::string& name) {
  SKIP_WITHOUT_CUDA();
  const test::Fixture fx = test::load_fixture(name);
  INFO("fixture ", name, " (", fx.module, ", ", fx.mode, ") on cuda:0");
  const Run cpu = run_fixture(fx, core::Device::cpu());
  const Run gpu = run_fixture(fx, core::Device::cuda(0));
  CHECK(gpu.outputs.size() == cpu.outputs.size());
  CHECK(gpu.grads.size() == cpu.grads.size());
  check_run(gpu, cpu.outputs, cpu.grads);
  std::map<std::string, core::Tensor> want_outputs;
  for (const auto& [key, value] : gpu.outputs)
    if (fx.has(key)) want_outputs[key] = fx.at(key);
  check_run(gpu, want_outputs, std::map<std::string, core::Tensor>(fx.grads.begin(), fx.grads.end()));
}

}  // namespace

#define PARITY_CAT2(a, b) a##b
#define PARITY_CAT(a, b) PARITY_CAT2(a, b)
#define PARITY(name)                                                                   \
  [[maybe_unused]] static const bool PARITY_CAT(parity_registered_, __LINE__) = register_fixture(name); \
  TEST_CASE("parity: " name) { check_fixture(name); }                                   \
  TEST_CASE("cuda parity: " name) { check_fixture_cuda(name); }

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
