// Parameter-free activations as modules (so they can sit in a Sequential).
#pragma once
#include "layers/module.h"

namespace moegrad::nn {

enum class GeluApproximation { none, tanh };

// GELU: exact x * Phi(x) (erf) by default, or PyTorch's tanh approximation.
class GELU : public UnaryModule {
 public:
  explicit GELU(GeluApproximation approximate = GeluApproximation::none) : approximate_(approximate) {}
  Variable forward(const Variable& x) override;
  std::string name() const override { return "GELU"; }
  std::string extra_repr() const override;

 private:
  GeluApproximation approximate_;
};

class ReLU : public UnaryModule {
 public:
  Variable forward(const Variable& x) override;
  std::string name() const override { return "ReLU"; }
};

class LeakyReLU : public UnaryModule {
 public:
  explicit LeakyReLU(double negative_slope = 0.01) : slope_(negative_slope) {}
  Variable forward(const Variable& x) override;
  double negative_slope() const { return slope_; }
  std::string name() const override { return "LeakyReLU"; }
  std::string extra_repr() const override;

 private:
  double slope_;
};

}  // namespace moegrad::nn
