// Adam and AdamW with PyTorch 1.13's update rules (torch.optim.Adam / AdamW, foreach=False),
// bias corrections included as torch computes them; see core/kernels/fused_update_math.h.
#pragma once
#include <utility>

#include "optim/optimizer.h"

namespace moegrad::optim {

struct AdamOptions {
  double lr = 1e-3;
  std::pair<double, double> betas{0.9, 0.999};
  double eps = 1e-8;
  double weight_decay = 0;  // L2: added to the gradient
  bool amsgrad = false;
  bool maximize = false;
};

struct AdamWOptions {
  double lr = 1e-3;
  std::pair<double, double> betas{0.9, 0.999};
  double eps = 1e-8;
  double weight_decay = 1e-2;  // decoupled: p *= 1 - lr * weight_decay before the update
  bool amsgrad = false;
  bool maximize = false;
};

// Errors like PyTorch's: "[Adam] invalid learning rate -1: must be >= 0", "[Adam] invalid
// eps ...", "[Adam] invalid beta1 1: must be in [0, 1)", "[Adam] invalid weight_decay ...".
class Adam final : public Optimizer {
 public:
  Adam(NamedParameters params, const AdamOptions& options);
  explicit Adam(NamedParameters params, double lr = 1e-3,
                std::pair<double, double> betas = {0.9, 0.999}, double eps = 1e-8,
                double weight_decay = 0, bool amsgrad = false);

  AdamOptions options() const;  // with the current lr
  Hyperparameters hyperparameters() const override;

 protected:
  void update(const core::Tensor& param, const core::Tensor& grad, ParamState& state) override;

 private:
  AdamOptions options_;
};

class AdamW final : public Optimizer {
 public:
  AdamW(NamedParameters params, const AdamWOptions& options);
  explicit AdamW(NamedParameters params, double lr = 1e-3,
                 std::pair<double, double> betas = {0.9, 0.999}, double eps = 1e-8,
                 double weight_decay = 1e-2, bool amsgrad = false);

  AdamWOptions options() const;  // with the current lr
  Hyperparameters hyperparameters() const override;

 protected:
  void update(const core::Tensor& param, const core::Tensor& grad, ParamState& state) override;

 private:
  AdamWOptions options_;
};

}  // namespace moegrad::optim
