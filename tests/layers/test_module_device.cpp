// Module::to and Module::device: parameters keep their names, requires_grad and identity,
// buffers move, tied parameters move once; a round trip through a GPU (where one is present)
// gives the values back bit for bit, and a module moved there runs its forward there.
#include <doctest/doctest.h>

#include <memory>
#include <string>
#include <vector>

#include "core/build_info.h"
#include "layers/layers.h"
#include "tests/cuda/cuda_test.h"

namespace ag = moegrad::ag;
namespace core = moegrad::core;
namespace nn = moegrad::nn;
using ag::Variable;
using core::Device;
using core::Tensor;
using doctest::Contains;
using moegrad::Error;

namespace {

// A parameter, a persistent and a non-persistent buffer, a child Sequential, and a parameter
// tied into the child.
struct Net : nn::Module {
  Net() {
    core::Generator gen(5);
    register_parameter("scale", core::ones({3}));
    register_buffer("running", core::full({3}, 0.25));
    register_buffer("scratch", core::zeros({1}), /*persistent=*/false);
    seq = register_module("seq", std::make_shared<nn::Sequential>(std::initializer_list<std::shared_ptr<nn::UnaryModule>>{
                                     std::make_shared<nn::Linear>(3, 4, true, core::TensorOptions{}, &gen),
                                     std::make_shared<nn::GELU>(),
                                     std::make_shared<nn::Linear>(4, 3, false, core::TensorOptions{}, &gen)}));
    tied = register_module("tied", std::make_shared<nn::Module>());
    tied->register_parameter("w", seq->parameter("0.weight"));  // the same Variable
  }
  std::string name() const override { return "Net"; }
  std::shared_ptr<nn::Sequential> seq;
  std::shared_ptr<nn::Module> tied;
};

struct Snapshot {
  std::vector<std::string> names;
  std::vector<const void*> impls;
  std::vector<std::vector<float>> values;
  std::vector<bool> requires_grad;
};

Snapshot snapshot(const nn::Module& m) {
  Snapshot s;
  for (const auto& [n, v] : m.named_parameters()) {
    s.names.push_back(n);
    s.impls.push_back(v.impl().get());
    s.values.push_back(core::to_device(v.value(), Device::cpu()).to_vector<float>());
    s.requires_grad.push_back(v.requires_grad());
  }
  for (const auto& [n, b] : m.named_buffers()) {
    s.names.push_back(n);
    s.values.push_back(core::to_device(b, Device::cpu()).to_vector<float>());
  }
  return s;
}

void check_same(const Snapshot& a, const Snapshot& b) {
  CHECK(a.names == b.names);
  CHECK(a.impls == b.impls);  // the same Variables: handles stay valid
  CHECK(a.values == b.values);
  CHECK(a.requires_grad == b.requires_grad);
}

}  // namespace

TEST_CASE("layers: module to(cpu) keeps names, requires_grad, identity and gradients, and device() reports it") {
  Net net;
  const auto handles = net.named_parameters();
  const Snapshot before = snapshot(net);
  handles[0].second.set_grad(core::ones({3}));
  const Tensor w_before = net.parameter("seq.0.weight").value();

  CHECK(&net.to(Device::cpu()) == &net);
  check_same(before, snapshot(net));
  CHECK(net.device() == Device::cpu());
  // Already on the device: nothing is copied, the tensors are the same storage.
  CHECK(net.parameter("seq.0.weight").value().storage() == w_before.storage());
  CHECK(handles[0].second.grad().to_vector<float>() == std::vector<float>{1, 1, 1});
  // The tied parameter is one Variable under two names, listed once.
  CHECK(net.tied->parameter("w").impl() == net.seq->parameter("0.weight").impl());
  CHECK(nn::Module().device() == Device::cpu());  // no tensors: cpu
}

TEST_CASE("layers: module to(cuda) and back is exact and the forward runs on the device") {
  SKIP_WITHOUT_CUDA();
  Net net;
  const auto handles = net.named_parameters();
  const Snapshot before = snapshot(net);
  handles[1].second.set_grad(core::ones(handles[1].second.shape()));

  net.to(Device::cuda(0));
  CHECK(net.device() == Device::cuda(0));
  for (const auto& [n, v] : handles) CHECK(v.device() == Device::cuda(0));  // old handles see the move
  for (const auto& [n, b] : net.named_buffers()) CHECK(b.device() == Device::cuda(0));
  CHECK(handles[1].second.grad().device() == Device::cuda(0));
  CHECK(net.tied->parameter("w").impl() == net.seq->parameter("0.weight").impl());
  check_same(before, snapshot(net));

  // The forward on the device equals the CPU's (to rounding).
  core::Generator gen(9);
  const Tensor x = core::randn({2, 3}, {}, &gen);
  const Tensor y_gpu = net.seq->forward(ag::constant(core::to_device(x, Device::cuda(0)))).value();
  CHECK(y_gpu.device() == Device::cuda(0));
  net.to(Device::cpu());
  check_same(before, snapshot(net));
  const Tensor y_cpu = net.seq->forward(ag::constant(x)).value();
  const auto a = core::to_device(y_gpu, Device::cpu()).to_vector<float>(), b = y_cpu.to_vector<float>();
  for (std::size_t i = 0; i < a.size(); ++i) CHECK(a[i] == doctest::Approx(b[i]).epsilon(1e-5));

  // Mixed devices are reported by device().
  net.seq->parameter("2.weight").impl()->value = core::to_device(net.seq->parameter("2.weight").value(), Device::cuda(0));
  CHECK_THROWS_WITH_AS(net.device(), Contains("[Net] tensors on several devices: cpu (scale) and cuda:0 (seq.2.weight)"),
                       Error);
}
