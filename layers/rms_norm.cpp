#include "layers/rms_norm.h"

#include <cmath>

#include "layers/check.h"

namespace moegrad::nn {

RMSNorm::RMSNorm(std::int64_t dim, TensorOptions options) : dim_(dim), scale_(std::sqrt(static_cast<double>(dim))) {
  MOEGRAD_CHECK(dim > 0, "RMSNorm", "dim must be > 0, got {}", dim);
  register_parameter("gamma", core::ones({dim}, options));
}

Variable RMSNorm::forward(const Variable& x) {
  const Variable& g = gamma();
  check_input("RMSNorm", x, g.value());
  check_last_dim("RMSNorm", x, dim_, "dim");
  // F.normalize(x, dim=-1) * gamma * scale, rounded in that order, as one fused op.
  return ag::rms_norm(x, g, scale_, 1e-12);
}

}  // namespace moegrad::nn
