// The fused optimizer updates on the parameter's device: the core ops' argument checks (every
// build), and one CUDA step of each optimizer and clipping compared with the same step on the
// CPU (the oracle). The CUDA cases skip themselves where no GPU is present.
#include <doctest/doctest.h>
#include <fmt/format.h>

#include <cmath>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "core/build_info.h"
#include "core/ops.h"
#include "core/ops/fused_update.h"
#include "optim/optim.h"
#include "tests/cuda/cuda_test.h"

namespace core = moegrad::core;
namespace optim = moegrad::optim;
namespace ag = moegrad::ag;
using core::Device;
using core::DType;
using core::Tensor;
using doctest::Contains;
using moegrad::Error;

namespace {


// Parameters of a few shapes (one above the CPU loop's OpenMP grain), seeded.
optim::NamedParameters make_params(DType dtype, Device device, std::uint64_t seed) {
  core::Generator gen(seed);
  optim::NamedParameters out;
  const std::vector<core::Shape> shapes{{3, 5}, {7}, {300, 130}, {1}};
  for (std::size_t i = 0; i < shapes.size(); ++i) {
    Tensor v = core::randn(shapes[i], {dtype}, &gen);
    out.emplace_back(fmt::format("p{}", i), ag::Variable(core::to_device(v, device), true));
  }
  return out;
}

// The same gradients (seeded by step) on each parameter set's device; one parameter has a
// huge gradient so that clipping by norm scales.
void set_grads(const optim::NamedParameters& ps, std::uint64_t step) {
  core::Generator gen(1000 + step);
  for (std::size_t i = 0; i < ps.size(); ++i) {
    const ag::Variable& v = ps[i].second;
    Tensor g = core::mul(core::randn(v.shape(), {v.dtype()}, &gen), i == 1 ? 40.0 : 1.0);
    v.set_grad(core::to_device(g, v.device()));
  }
}

// |a - b| <= rtol * (|b| + 1) elementwise: CUDA may contract a * b + c into one FMA where the
// CPU rounds twice, so the two agree to a few ulps, not bit for bit.
void check_close(const Tensor& got, const Tensor& want, double rtol, const std::string& what) {
  CAPTURE(what);
  REQUIRE(got.shape() == want.shape());
  REQUIRE(got.dtype() == want.dtype());
  const std::vector<double> a = core::to_device(got, Device::cpu()).to_vector<double>();
  const std::vector<double> b = want.to_vector<double>();
  std::size_t bad = 0, first = 0;
  for (std::size_t i = 0; i < a.size(); ++i)
    if (!(std::abs(a[i] - b[i]) <= rtol * (std::abs(b[i]) + 1.0)) && bad++ == 0) first = i;
  CAPTURE(first);
  CAPTURE(a.empty() ? 0.0 : a[first]);
  CAPTURE(b.empty() ? 0.0 : b[first]);
  CHECK(bad == 0);
}

using MakeOptimizer = std::function<std::unique_ptr<optim::Optimizer>(optim::NamedParameters)>;
using Clip = std::function<double(const optim::NamedParameters&)>;

// Three steps on the CPU and on cuda:0 from the same parameters and gradients; parameters and
// every state tensor must agree, and the state must live on the parameters' device.
void compare_devices(const MakeOptimizer& make, DType dtype, const Clip& clip = {}) {
  const auto cpu = make_params(dtype, Device::cpu(), 7);
  const auto gpu = make_params(dtype, Device::cuda(0), 7);
  auto opt_cpu = make(cpu);
  auto opt_gpu = make(gpu);
  const double rtol = dtype == DType::f32 ? 2e-5 : 1e-12;
  for (std::uint64_t step = 0; step < 3; ++step) {
    set_grads(cpu, step);
    set_grads(gpu, step);
    if (clip) {
      const double total_cpu = clip(cpu), total_gpu = clip(gpu);
      CHECK(std::abs(total_gpu - total_cpu) <= rtol * (std::abs(total_cpu) + 1.0));
      for (std::size_t i = 0; i < cpu.size(); ++i)
        check_close(gpu[i].second.grad(), cpu[i].second.grad(), rtol, "clipped grad of " + cpu[i].first);
    }
    opt_cpu->step();
    opt_gpu->step();
  }
  for (std::size_t i = 0; i < cpu.size(); ++i) {
    CHECK(gpu[i].second.device() == Device::cuda(0));
    check_close(gpu[i].second.value(), cpu[i].second.value(), rtol, cpu[i].first);
  }
  const auto sc = opt_cpu->state_dict(), sg = opt_gpu->state_dict();
  REQUIRE(sc.size() == sg.size());
  for (const auto& [key, t] : sc) {
    const Tensor& g = sg.at(key);
    if (key.find("/step") != std::string::npos || key == "step_count") {
      CHECK(g.to_vector<std::int64_t>() == t.to_vector<std::int64_t>());
      continue;
    }
    CHECK(g.device() == Device::cuda(0));
    check_close(g, t, rtol, key);
  }
}

}  // namespace

TEST_CASE("optim: the fused update ops check their operands and name themselves") {
  const Tensor p = core::zeros({2, 3}), g = core::zeros({2, 3});
  core::optim_math::SgdStep<double> sgd{-0.1, 0, 0.9, 1, false, false, false, true};
  CHECK_THROWS_WITH_AS(core::sgd_update_(p, core::zeros({3, 2}), Tensor{}, sgd),
                       Contains("[sgd_update_] grad f32(3, 2) does not match param f32(2, 3)"), Error);
  CHECK_THROWS_WITH_AS(core::sgd_update_(p, g, core::zeros({2, 3}, {DType::f64}), sgd),
                       Contains("[sgd_update_] momentum_buffer f64(2, 3) does not match param f32(2, 3)"), Error);
  CHECK_THROWS_WITH_AS(core::sgd_update_(p, core::transpose(core::zeros({3, 2}), 0, 1), Tensor{}, sgd),
                       Contains("[sgd_update_] grad f32(2, 3) is not contiguous"), Error);
  CHECK_THROWS_WITH_AS(core::sgd_update_(Tensor{}, g, Tensor{}, sgd), Contains("[sgd_update_] param tensor is undefined"),
                       Error);
  CHECK_THROWS_WITH_AS(core::sgd_update_(core::zeros({2}, {DType::i64}), core::zeros({2}, {DType::i64}), Tensor{}, sgd),
                       Contains("[sgd_update_] param is i64(2,): only f32/f64 can be updated"), Error);

  core::optim_math::AdamStep<double> adam{0.9, 0.1, 0.999, 0.001, 1, 1e-8, -1e-3, 0, 1, false, false, false};
  CHECK_THROWS_WITH_AS(core::adam_update_(p, g, core::zeros({2, 3}), core::zeros({6}), Tensor{}, adam),
                       Contains("[adam_update_] exp_avg_sq f32(6,) does not match param f32(2, 3)"), Error);
  CHECK_THROWS_WITH_AS(core::adam_update_(p, g, Tensor{}, core::zeros({2, 3}), Tensor{}, adam),
                       Contains("[adam_update_] exp_avg tensor is undefined"), Error);
  CHECK_THROWS_WITH_AS(core::grad_scale_(core::zeros({2}, {DType::i64}), 0.5),
                       Contains("[grad_scale_] grad is i64(2,)"), Error);
  CHECK_THROWS_WITH_AS(core::grad_clamp_(g, 1.0, -1.0), Contains("[grad_clamp_] lo 1 is above hi -1"), Error);

  // The ops themselves, by hand: p = p - 0.1 * g; g * 0.5; clamp to [-1, 1].
  const Tensor q = core::from_vector<float>({1, 2}, {2});
  const Tensor dq = core::from_vector<float>({10, -4}, {2});
  sgd.momentum = 0;
  core::sgd_update_(q, dq, Tensor{}, sgd);
  CHECK(q.to_vector<float>() == std::vector<float>{1 - 0.1f * 10, 2 + 0.1f * 4});
  core::grad_scale_(dq, 0.5);
  CHECK(dq.to_vector<float>() == std::vector<float>{5, -2});
  core::grad_clamp_(dq, -1, 1);
  CHECK(dq.to_vector<float>() == std::vector<float>{1, -1});

  if (cuda_test::present()) {  // every operand on the parameter's device
    CHECK_THROWS_WITH_AS(core::sgd_update_(core::to_device(p, Device::cuda(0)), g, Tensor{}, sgd),
                         Contains("[sgd_update_] grad is on cpu, param on cuda:0"), Error);
  }
}

TEST_CASE("optim cuda: SGD with momentum and nesterov, one step on CUDA equals the CPU's") {
  SKIP_WITHOUT_CUDA();
  for (DType dtype : {DType::f32, DType::f64}) {
    CAPTURE(core::dtype_name(dtype));
    compare_devices([](optim::NamedParameters ps) {
      return std::make_unique<optim::SGD>(std::move(ps), 0.05, 0.9, 0.0, 0.01, /*nesterov=*/true);
    }, dtype);
    compare_devices([](optim::NamedParameters ps) {
      return std::make_unique<optim::SGD>(std::move(ps), optim::SGDOptions{.lr = 0.05, .momentum = 0.8,
                                                                           .dampening = 0.1, .maximize = true});
    }, dtype);
    compare_devices([](optim::NamedParameters ps) { return std::make_unique<optim::SGD>(std::move(ps), 0.05); }, dtype);
  }
}

TEST_CASE("optim cuda: Adam with amsgrad and AdamW on CUDA equal the CPU's") {
  SKIP_WITHOUT_CUDA();
  for (DType dtype : {DType::f32, DType::f64}) {
    CAPTURE(core::dtype_name(dtype));
    compare_devices([](optim::NamedParameters ps) {
      return std::make_unique<optim::Adam>(std::move(ps), 1e-2, std::pair{0.9, 0.99}, 1e-8, 0.01, /*amsgrad=*/true);
    }, dtype);
    compare_devices([](optim::NamedParameters ps) { return std::make_unique<optim::AdamW>(std::move(ps), 1e-2); },
                    dtype);
    compare_devices([](optim::NamedParameters ps) {
      return std::make_unique<optim::AdamW>(std::move(ps), 1e-2, std::pair{0.8, 0.9}, 1e-6, 0.1, /*amsgrad=*/true);
    }, dtype);
  }
}

TEST_CASE("optim cuda: clip_grad_norm and clip_grad_value on CUDA equal the CPU's") {
  SKIP_WITHOUT_CUDA();
  const auto adamw = [](optim::NamedParameters ps) { return std::make_unique<optim::AdamW>(std::move(ps), 1e-2); };
  for (DType dtype : {DType::f32, DType::f64}) {
    CAPTURE(core::dtype_name(dtype));
    compare_devices(adamw, dtype, [](const optim::NamedParameters& ps) { return optim::clip_grad_norm(ps, 1.0); });
    compare_devices(adamw, dtype, [](const optim::NamedParameters& ps) { return optim::clip_grad_norm(ps, 5.0, 1.0); });
    compare_devices(adamw, dtype, [](const optim::NamedParameters& ps) {
      return optim::clip_grad_norm(ps, 2.0, INFINITY);
    });
    compare_devices(adamw, dtype, [](const optim::NamedParameters& ps) {
      optim::clip_grad_value(ps, 0.5);
      return 0.0;
    });
  }
}

TEST_CASE("optim cuda: state follows a parameter moved after the optimizer was built, and state dicts cross devices") {
  SKIP_WITHOUT_CUDA();
  auto cpu = make_params(DType::f32, Device::cpu(), 3);
  optim::Adam opt(cpu, 1e-2);
  set_grads(cpu, 0);
  opt.step();
  const auto host_state = opt.state_dict();
  // Move the parameters in place (as nn::Module::to does): the state follows at the next step.
  for (const auto& [n, v] : cpu) {
    v.impl()->value = core::to_device(v.value(), Device::cuda(0));
    v.zero_grad();
  }
  set_grads(cpu, 1);
  opt.step();
  for (const auto& [key, t] : opt.state_dict())
    if (key.find("exp_avg") != std::string::npos) CHECK(t.device() == Device::cuda(0));
  // A host state_dict loads into CUDA state.
  opt.load_state_dict(host_state);
  for (const auto& [key, t] : opt.state_dict())
    if (key.find("exp_avg") != std::string::npos) {
      CHECK(t.device() == Device::cuda(0));
      check_close(t, host_state.at(key), 0, key);
    }
}
