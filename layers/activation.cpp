#include "layers/activation.h"

namespace moegrad::nn {

namespace {
void check_defined(const char* module, const Variable& x) { MOEGRAD_CHECK(x.defined(), module, "input is undefined"); }
}  // namespace

Variable GELU::forward(const Variable& x) {
  check_defined("GELU", x);
  return approximate_ == GeluApproximation::none ? ag::gelu(x) : ag::gelu_tanh(x);
}

std::string GELU::extra_repr() const {
  return approximate_ == GeluApproximation::none ? "approximate='none'" : "approximate='tanh'";
}

Variable ReLU::forward(const Variable& x) {
  check_defined("ReLU", x);
  return ag::relu(x);
}

Variable LeakyReLU::forward(const Variable& x) {
  check_defined("LeakyReLU", x);
  return ag::leaky_relu(x, slope_);
}

std::string LeakyReLU::extra_repr() const { return fmt::format("negative_slope={}", slope_); }

}  // namespace moegrad::nn
