// RMSNorm as st-moe defines it: y = x / max(||x||_2, 1e-12) * gamma * sqrt(dim) over the
// last dim (F.normalize), gamma = ones(dim). Equal to x / rms(x) * gamma away from x = 0.
#pragma once
#include "layers/module.h"

namespace moegrad::nn {

class RMSNorm : public UnaryModule {
 public:
  explicit RMSNorm(std::int64_t dim, TensorOptions options = {});
  Variable forward(const Variable& x) override;  // x [..., dim]

  const Variable& gamma() const { return parameter("gamma"); }
  std::int64_t dim() const { return dim_; }
  std::string name() const override { return "RMSNorm"; }
  std::string extra_repr() const override { return fmt::format("dim={}", dim_); }

 private:
  std::int64_t dim_;
  double scale_;  // sqrt(dim)
};

}  // namespace moegrad::nn
