// Float64 gradient checks of each block's whole forward with respect to its input and every
// parameter. The module is built in f64; gradcheck's leaves are bound to its parameters with
// set_parameter (so the module's own forward runs on them), the input is leaf 0.
// These are plain test cases, not GRADCHECK catalogue entries: the blocks compose
// catalogue ops, they do not register new ones.
#include <doctest/doctest.h>

#include <functional>
#include <memory>

#include "layers/layers.h"
#include "tests/autograd/gradcheck.h"

namespace core = moegrad::core;
namespace nn = moegrad::nn;
using gradcheck::Input;
using gradcheck::Layout;
using moegrad::ag::Variable;

namespace {

const core::TensorOptions kF64{core::DType::f64};

// Checks d/d(input, parameters) of m.forward. Parameters with 2+ dims may be stored
// transposed (param_layout), to cover non-contiguous weights.
void check_module(const std::string& label, nn::UnaryModule& m, Input x, Layout param_layout = Layout::contiguous) {
  const auto params = m.named_parameters();
  std::vector<Input> specs{x};
  for (const auto& [name, p] : params) {
    REQUIRE(p.dtype() == core::DType::f64);
    specs.push_back({p.shape(), p.dim() >= 2 ? param_layout : Layout::contiguous});
  }
  gradcheck::check(
      label,
      [&](const std::vector<Variable>& in) {
        for (std::size_t i = 0; i < params.size(); ++i) m.set_parameter(params[i].first, in[i + 1]);
        return m.forward(in[0]);
      },
      specs);
  // The bound leaves are the module's parameters now.
  for (std::size_t i = 0; i < params.size(); ++i) CHECK(m.parameter(params[i].first).requires_grad());
}

}  // namespace

TEST_CASE("layers: gradcheck Linear") {
  nn::Linear l(3, 4, true, kF64);
  check_module("linear 2-D", l, {{5, 3}});
  check_module("linear 3-D, transposed input and weight", l, {{2, 5, 3}, Layout::transposed}, Layout::transposed);
  check_module("linear 1-D", l, {{3}});
  nn::Linear nb(4, 2, false, kF64);
  check_module("linear no bias, strided input", nb, {{3, 4}, Layout::strided});
}

TEST_CASE("layers: gradcheck RMSNorm") {
  nn::RMSNorm n(5, kF64);
  check_module("rmsnorm 2-D", n, {{4, 5}});
  check_module("rmsnorm 3-D transposed", n, {{2, 3, 5}, Layout::transposed});
}

TEST_CASE("layers: gradcheck GEGLU and activations") {
  nn::GEGLU g(3, true, kF64);
  check_module("geglu", g, {{4, 6}});
  check_module("geglu strided", g, {{2, 2, 6}, Layout::strided});
  nn::GEGLU gp(3, false, kF64);
  check_module("geglu without mult_bias", gp, {{4, 6}});
  nn::GELU gelu;
  check_module("gelu", gelu, {{3, 4}});
  nn::GELU gelu_t(nn::GeluApproximation::tanh);
  check_module("gelu tanh", gelu_t, {{3, 4}});
  nn::ReLU relu;
  check_module("relu", relu, {{3, 4}, Layout::contiguous, gradcheck::Domain::away_from_zero});
  nn::LeakyReLU leaky(0.1);
  check_module("leaky relu", leaky, {{3, 4}, Layout::contiguous, gradcheck::Domain::away_from_zero});
}

TEST_CASE("layers: gradcheck Sequential") {
  nn::Sequential s{std::make_shared<nn::Linear>(3, 4, true, kF64), std::make_shared<nn::GELU>(),
                   std::make_shared<nn::RMSNorm>(4, kF64), std::make_shared<nn::Linear>(4, 2, false, kF64)};
  check_module("sequential", s, {{5, 3}});
}

TEST_CASE("layers: gradcheck st-moe Expert") {
  nn::st::Expert e(4, 2, true, false, kF64);  // hidden int(4 * 2 * 2 / 3) = 5
  REQUIRE(e.hidden_dim() == 5);
  check_module("expert", e, {{2, 3, 4}});
  nn::st::Expert ep(4, 2, true, true, kF64);
  check_module("expert prenorm, transposed weights", ep, {{3, 4}, Layout::transposed}, Layout::transposed);
  nn::st::Expert en(3, 2, false, false, kF64);
  check_module("expert without mult_bias", en, {{2, 3}});
}

TEST_CASE("layers: gradcheck zeta Experts") {
  nn::zeta::Experts z(2, 3, kF64);
  check_module("zeta experts [E, n, d]", z, {{3, 4, 2}});
  check_module("zeta experts [1, n, d] broadcast", z, {{1, 4, 2}, Layout::transposed}, Layout::transposed);
}

TEST_CASE("layers: gradcheck lucidrains Experts") {
  nn::lmoe::Experts l(3, 2, 4, nullptr, kF64);
  check_module("lmoe experts gelu", l, {{2, 5, 3}});
  nn::lmoe::Experts lt(2, std::vector<std::int64_t>{2, 3}, 3, std::make_shared<nn::ReLU>(), kF64);
  check_module("lmoe experts (2, 3) relu", lt, {{2, 3, 4, 2}}, Layout::transposed);
  check_module("lmoe experts broadcast leading dim", lt, {{1, 3, 4, 2}});
}
