#include "layers/init.h"

#include <cmath>

namespace moegrad::nn::init {

void uniform_(const core::Tensor& t, double lo, double hi, core::Generator* gen) {
  core::copy_(t, core::uniform(t.shape(), lo, hi, {t.dtype(), t.device()}, gen));
}

void normal_(const core::Tensor& t, core::Generator* gen) {
  core::copy_(t, core::randn(t.shape(), {t.dtype(), t.device()}, gen));
}

double kaiming_uniform_bound(std::int64_t fan_in, double a) {
  MOEGRAD_CHECK(fan_in > 0, "init", "kaiming_uniform needs fan_in > 0, got {}", fan_in);
  const double gain = std::sqrt(2.0 / (1.0 + a * a));
  const double std = gain / std::sqrt(static_cast<double>(fan_in));
  return std::sqrt(3.0) * std;
}

}  // namespace moegrad::nn::init
