// optim/module_state: the optimizer's state under the module's state_dict keys and shapes
// (per-expert keys for stacked st-moe experts), its values against the internal state, the
// strict reverse, and an exact resume through it.
#include <doctest/doctest.h>

#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "core/ops.h"
#include "layers/linear.h"
#include "layers/moe/st_experts.h"
#include "optim/optim.h"

namespace core = moegrad::core;
namespace nn = moegrad::nn;
namespace optim = moegrad::optim;
namespace ag = moegrad::ag;
using core::DType;
using core::Tensor;
using doctest::Contains;
using moegrad::Error;

namespace {

// A projection and E = 3 stacked st-moe experts: "experts.w_in" [3, 2h, 4] is exposed as
// "experts.experts.<i>.net.0.weight" [2h, 4].
struct Net : nn::Module {
  explicit Net(std::uint64_t seed) {
    core::Generator g(seed);
    register_module("proj", std::make_shared<nn::Linear>(4, 4, true, core::TensorOptions{}, &g));
    register_module("experts", std::make_shared<nn::st::Experts>(4, 3, 1.5, core::TensorOptions{}, &g));
  }
  std::string name() const override { return "Net"; }
};

bool same_bits(const Tensor& a, const Tensor& b) {
  if (a.shape() != b.shape() || a.dtype() != b.dtype()) return false;
  const Tensor x = core::contiguous(a), y = core::contiguous(b);
  return std::memcmp(x.raw_data(), y.raw_data(), static_cast<std::size_t>(x.numel()) * core::dtype_size(x.dtype())) == 0;
}

// `steps` updates with gradients drawn from (seed, step), the same for every run.
void train(nn::Module& m, optim::Optimizer& opt, int first, int steps) {
  for (int s = first; s < first + steps; ++s) {
    core::Generator g(1000 + static_cast<std::uint64_t>(s));
    for (const auto& [name, p] : m.named_parameters()) p.set_grad(core::randn(p.shape(), {}, &g));
    opt.step();
    opt.zero_grad();
  }
}

}  // namespace

TEST_CASE("optim: state under the module's keys: names, shapes and values of the internal state") {
  Net net(1);
  optim::AdamW opt(net.named_parameters(), 1e-2);
  train(net, opt, 0, 3);
  const nn::StateDict keyed = optim::module_state_dict(opt, net), internal = opt.state_dict(), model = net.state_dict();

  // One "<key>/step|exp_avg|exp_avg_sq" per /model key, with the key's shape, plus step_count.
  CHECK(keyed.size() == 3 * model.size() + 1);
  for (const auto& [key, value] : model) {
    for (const char* slot : {"exp_avg", "exp_avg_sq"}) {
      REQUIRE(keyed.find(key + "/" + slot) != nullptr);
      CHECK(keyed.at(key + "/" + slot).shape() == value.shape());
    }
    const Tensor& step = keyed.at(key + "/step");
    CHECK(step.dtype() == DType::f32);  // as torch.optim.AdamW keeps it
    CHECK(step.dim() == 0);
    CHECK(step.item<double>() == 3.0);
  }
  CHECK(keyed.at("step_count").item<std::int64_t>() == 3);
  // Expert i's slot is slice i of the stacked slot; the others are the internal tensors.
  const std::vector<std::pair<std::string, std::string>> stacked{
      {"net.0.weight", "w_in"}, {"net.0.bias", "b_in"}, {"net.1.mult_bias", "mult_bias"}, {"net.2.weight", "w_out"},
      {"net.2.bias", "b_out"}};
  for (const char* slot : {"exp_avg", "exp_avg_sq"}) {
    for (std::int64_t i = 0; i < 3; ++i)
      for (const auto& [suffix, param] : stacked)
        CHECK(same_bits(keyed.at("experts.experts." + std::to_string(i) + "." + suffix + "/" + slot),
                        core::select(internal.at("experts." + param + "/" + slot), 0, i)));
    CHECK(same_bits(keyed.at(std::string("proj.weight/") + slot), internal.at(std::string("proj.weight/") + slot)));
  }
  CHECK_FALSE(keyed.contains("experts.w_in/exp_avg"));
}

TEST_CASE("optim: state under the module's keys loads back exactly, and a resumed run is bitwise the same") {
  for (const char* kind : {"AdamW", "Adam", "SGD"}) {
    CAPTURE(kind);
    auto make = [&](nn::Module& m) -> std::unique_ptr<optim::Optimizer> {
      if (std::string(kind) == "SGD") return std::make_unique<optim::SGD>(m.named_parameters(), 0.1, 0.9);
      if (std::string(kind) == "Adam") return std::make_unique<optim::Adam>(m.named_parameters(), 1e-2);
      return std::make_unique<optim::AdamW>(m.named_parameters(), 1e-2);
    };
    Net a(2), b(3);
    auto opt_a = make(a), opt_b = make(b);
    train(a, *opt_a, 0, 2);
    const nn::StateDict model = nn::clone(a.state_dict()), state = nn::clone(optim::module_state_dict(*opt_a, a));
    b.load_state_dict(model);
    optim::load_module_state_dict(*opt_b, b, state);
    for (const auto& [key, t] : opt_a->state_dict()) CHECK_MESSAGE(same_bits(t, opt_b->state_dict().at(key)), key);
    train(a, *opt_a, 2, 3);
    train(b, *opt_b, 2, 3);
    for (const auto& [key, t] : a.state_dict()) CHECK_MESSAGE(same_bits(t, b.state_dict().at(key)), key);
    for (const auto& [key, t] : opt_a->state_dict()) CHECK_MESSAGE(same_bits(t, opt_b->state_dict().at(key)), key);
  }
}

TEST_CASE("optim: loading state under the module's keys is strict and names every problem in one line") {
  Net net(4);
  optim::AdamW opt(net.named_parameters(), 1e-2);
  train(net, opt, 0, 1);
  const nn::StateDict good = nn::clone(optim::module_state_dict(opt, net));
  const nn::StateDict before = nn::clone(opt.state_dict());
  auto edited = [&](auto&& edit) {
    nn::StateDict sd;
    for (const auto& [key, t] : good) sd.insert(key, t);
    edit(sd);
    return sd;
  };
  auto rejects = [&](const nn::StateDict& sd, const char* message) {
    CHECK_THROWS_WITH_AS(optim::load_module_state_dict(opt, net, sd), Contains(message), Error);
    for (const auto& [key, t] : before) CHECK(same_bits(t, opt.state_dict().at(key)));  // nothing copied
  };
  rejects(edited([](nn::StateDict& sd) {
            nn::StateDict out;
            for (const auto& [key, t] : sd)
              if (key != "experts.experts.1.net.0.weight/exp_avg_sq") out.insert(key, t);
            sd = out;
          }),
          "[AdamW] optimizer state: missing keys: experts.experts.1.net.0.weight/exp_avg_sq");
  rejects(edited([](nn::StateDict& sd) { sd.insert("experts.w_in/exp_avg", core::zeros({3, 8, 4})); }),
          "unexpected keys: experts.w_in/exp_avg");
  rejects(edited([](nn::StateDict& sd) { sd.set("experts.experts.2.net.2.bias/exp_avg", core::zeros({5})); }),
          "shape mismatch: experts.experts.2.net.2.bias/exp_avg (checkpoint (5,) vs model (4,))");
  rejects(edited([](nn::StateDict& sd) { sd.set("experts.experts.0.net.0.bias/step", core::scalar_tensor(7, {DType::f32})); }),
          "steps differ within one parameter: experts.experts.1.net.0.bias/step = 1 vs experts.experts.0.net.0.bias/step = 7");
  rejects(edited([](nn::StateDict& sd) { sd.set("proj.bias/step", core::scalar_tensor(-1, {DType::f32})); }),
          "invalid step: proj.bias/step (f32())");
  // A checkpoint written by PyTorch-like code with float64 steps loads (steps of any numeric dtype).
  optim::load_module_state_dict(
      opt, net, edited([](nn::StateDict& sd) { sd.set("proj.bias/step", core::scalar_tensor(1, {DType::f64})); }));
}
