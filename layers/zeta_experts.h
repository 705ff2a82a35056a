// zeta's Experts(dim, experts=16): w1 [E, d, 2d], w2 [E, 2d, 2d], w3 [E, 2d, d], all N(0, 1)
// unscaled (spec §4, §7 S1). out = act(act(x @ w1) @ w2) @ w3 with act = LeakyReLU(0.01),
// batched over the expert axis: x [E, n, d] (or [1, n, d], broadcast) -> [E, n, d].
#pragma once
#include "layers/module.h"

namespace moegrad::nn::zeta {

class Experts : public UnaryModule {
 public:
  explicit Experts(std::int64_t dim, std::int64_t experts = 16, TensorOptions options = {},
                   core::Generator* gen = nullptr);
  Variable forward(const Variable& x) override;

  std::int64_t dim() const { return dim_; }
  std::int64_t num_experts() const { return experts_; }
  std::string name() const override { return "Experts"; }
  std::string extra_repr() const override;

 private:
  std::int64_t dim_, experts_;
};

}  // namespace moegrad::nn::zeta
