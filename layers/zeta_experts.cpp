#include "layers/zeta_experts.h"

#include "layers/check.h"

namespace moegrad::nn::zeta {

namespace {
constexpr double kSlope = 0.01;  // nn.LeakyReLU(0.01)
}

Experts::Experts(std::int64_t dim, std::int64_t experts, TensorOptions options, core::Generator* gen)
    : dim_(dim), experts_(experts) {
  MOEGRAD_CHECK(dim > 0 && experts > 0, "zeta.Experts", "dim and experts must be > 0, got {} and {}", dim, experts);
  register_parameter("w1", core::randn({experts, dim, 2 * dim}, options, gen));
  register_parameter("w2", core::randn({experts, 2 * dim, 2 * dim}, options, gen));
  register_parameter("w3", core::randn({experts, 2 * dim, dim}, options, gen));
}

Variable Experts::forward(const Variable& x) {
  const Variable& w1 = parameter("w1");
  check_input("zeta.Experts", x, w1.value());
  MOEGRAD_CHECK(x.dim() == 3 && (x.size(0) == experts_ || x.size(0) == 1) && x.size(2) == dim_, "zeta.Experts",
                "input must be [experts={} (or 1), tokens, dim={}], got {}", experts_, dim_, core::describe(x.value()));
  Variable h = ag::leaky_relu(ag::matmul(x, w1), kSlope);
  h = ag::leaky_relu(ag::matmul(h, parameter("w2")), kSlope);
  return ag::matmul(h, parameter("w3"));
}

std::string Experts::extra_repr() const { return fmt::format("dim={}, experts={}", dim_, experts_); }

}  // namespace moegrad::nn::zeta
