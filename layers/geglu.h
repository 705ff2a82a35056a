// GEGLU as st-moe defines it: a, g = chunk(x, 2, -1) (the first half is the value);
// out = gelu_erf(g) * a * mult_bias, with the parameter mult_bias = ones(dim) when enabled.
#pragma once
#include "layers/module.h"

namespace moegrad::nn {

class GEGLU : public UnaryModule {
 public:
  explicit GEGLU(std::int64_t dim, bool mult_bias = true, TensorOptions options = {});
  Variable forward(const Variable& x) override;  // x [..., 2*dim] -> [..., dim]

  std::int64_t dim() const { return dim_; }
  bool has_mult_bias() const { return has_mult_bias_; }
  std::string name() const override { return "GEGLU"; }
  std::string extra_repr() const override;

 private:
  std::int64_t dim_;
  bool has_mult_bias_;
};

}  // namespace moegrad::nn
