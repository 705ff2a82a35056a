#include "layers/geglu.h"

#include "layers/check.h"

namespace moegrad::nn {

GEGLU::GEGLU(std::int64_t dim, bool mult_bias, TensorOptions options) : dim_(dim), has_mult_bias_(mult_bias) {
  MOEGRAD_CHECK(dim > 0, "GEGLU", "dim must be > 0, got {}", dim);
  if (mult_bias) register_parameter("mult_bias", core::ones({dim}, options));
}

Variable GEGLU::forward(const Variable& x) {
  MOEGRAD_CHECK(x.defined(), "GEGLU", "input is undefined");
  if (has_mult_bias_) check_input("GEGLU", x, parameter("mult_bias").value());
  check_last_dim("GEGLU", x, 2 * dim_, "2 * dim");
  if (has_mult_bias_) return ag::geglu(x, parameter("mult_bias"));  // one fused pass
  const auto halves = ag::chunk(x, 2, -1);  // value, gate
  return ag::mul(ag::gelu(halves[1]), halves[0]);
}

std::string GEGLU::extra_repr() const { return fmt::format("dim={}, mult_bias={}", dim_, py_bool(has_mult_bias_)); }

}  // namespace moegrad::nn
