// SGD with PyTorch 1.13's update rule (torch.optim.SGD, foreach=False); see
// core/kernels/fused_update_math.h for the per-element math.
#pragma once
#include <limits>

#include "optim/optimizer.h"

namespace moegrad::optim {

struct SGDOptions {
  double lr = std::numeric_limits<double>::quiet_NaN();  // required, as in PyTorch
  double momentum = 0;
  double dampening = 0;
  double weight_decay = 0;
  bool nesterov = false;
  bool maximize = false;
};

class SGD final : public Optimizer {
 public:
  // Errors like PyTorch's: "[SGD] invalid momentum -0.1: must be >= 0", "[SGD] invalid
  // weight_decay ...", "[SGD] invalid learning rate ...", "[SGD] nesterov momentum requires
  // momentum > 0 and dampening 0".
  SGD(NamedParameters params, const SGDOptions& options);
  SGD(NamedParameters params, double lr, double momentum = 0, double dampening = 0,
      double weight_decay = 0, bool nesterov = false, bool maximize = false);

  SGDOptions options() const;  // with the current lr
  Hyperparameters hyperparameters() const override;

 protected:
  void update(const core::Tensor& param, const core::Tensor& grad, ParamState& state) override;

 private:
  SGDOptions options_;
};

}  // namespace moegrad::optim
