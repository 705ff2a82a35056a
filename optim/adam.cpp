// Adam and AdamW: validation like PyTorch's constructors, and the fused update with the bias
// corrections computed as torch 1.13 computes them (in double, on the host, per step).
#include "optim/adam.h"

#include <cmath>

#include "core/ops.h"
#include "core/ops/fused_update.h"

namespace moegrad::optim {

namespace {

struct AdamConfig {
  double lr, beta1, beta2, eps, weight_decay;
  bool amsgrad, maximize, decoupled;
};

template <class Options> const Options& validated(const char* op, const Options& o) {
  MOEGRAD_CHECK(o.eps >= 0, op, "invalid eps {}: must be >= 0", o.eps);
  MOEGRAD_CHECK(o.betas.first >= 0 && o.betas.first < 1, op, "invalid beta1 {}: must be in [0, 1)", o.betas.first);
  MOEGRAD_CHECK(o.betas.second >= 0 && o.betas.second < 1, op, "invalid beta2 {}: must be in [0, 1)",
                o.betas.second);
  MOEGRAD_CHECK(o.weight_decay >= 0, op, "invalid weight_decay {}: must be >= 0", o.weight_decay);
  return o;
}

template <class Options> std::vector<std::string> adam_slots(const Options& o) {
  if (o.amsgrad) return {"exp_avg", "exp_avg_sq", "max_exp_avg_sq"};
  return {"exp_avg", "exp_avg_sq"};
}

template <class Options> Hyperparameters adam_hyper(const char* name, double lr, const Options& o) {
  return {name,
          {{"lr", lr},
           {"beta1", o.betas.first},
           {"beta2", o.betas.second},
           {"eps", o.eps},
           {"weight_decay", o.weight_decay},
           {"amsgrad", o.amsgrad},
           {"maximize", o.maximize}}};
}

void adam_update(const AdamConfig& c, const core::Tensor& param, const core::Tensor& grad, std::int64_t step,
                 std::vector<core::Tensor>& slots) {
  // torch: step = step_t.item(); bias_correction = 1 - beta ** step (Python floats). The
  // coefficients stay double here; core::adam_update_ casts them to the parameter's dtype once.
  const double t = static_cast<double>(step);
  const double bias_correction1 = 1 - std::pow(c.beta1, t);
  const double bias_correction2 = 1 - std::pow(c.beta2, t);
  const double step_size = c.lr / bias_correction1;
  core::optim_math::AdamStep<double> f;
  f.beta1 = c.beta1;
  f.one_minus_beta1 = 1 - c.beta1;
  f.beta2 = c.beta2;
  f.one_minus_beta2 = 1 - c.beta2;
  f.bias_correction2_sqrt = std::sqrt(bias_correction2);
  f.eps = c.eps;
  f.neg_step_size = -step_size;
  f.weight_decay = c.weight_decay;
  f.decay_factor = 1 - c.lr * c.weight_decay;
  f.l2 = !c.decoupled && c.weight_decay != 0;
  f.decoupled = c.decoupled;
  f.maximize = c.maximize;
  core::adam_update_(param, grad, slots[0], slots[1], c.amsgrad ? slots[2] : core::Tensor{}, f);
}

}  // namespace

// ---- Adam --------------------------------------------------------------------------------------

Adam::Adam(NamedParameters params, const AdamOptions& options)
    : Optimizer("Adam", std::move(params), options.lr), options_(validated("Adam", options)) {
  init_slots(adam_slots(options_));
}

Adam::Adam(NamedParameters params, double lr, std::pair<double, double> betas, double eps, double weight_decay,
           bool amsgrad)
    : Adam(std::move(params), AdamOptions{lr, betas, eps, weight_decay, amsgrad, false}) {}

AdamOptions Adam::options() const {
  AdamOptions o = options_;
  o.lr = lr();
  return o;
}

Hyperparameters Adam::hyperparameters() const { return adam_hyper("Adam", lr(), options_); }

void Adam::update(const core::Tensor& param, const core::Tensor& grad, ParamState& state) {
  const AdamConfig c{lr(), options_.betas.first, options_.betas.second, options_.eps, options_.weight_decay,
                     options_.amsgrad, options_.maximize, false};
  adam_update(c, param, grad, state.step, state.slots);
}

// ---- AdamW -------------------------------------------------------------------------------------

AdamW::AdamW(NamedParameters params, const AdamWOptions& options)
    : Optimizer("AdamW", std::move(params), options.lr), options_(validated("AdamW", options)) {
  init_slots(adam_slots(options_));
}

AdamW::AdamW(NamedParameters params, double lr, std::pair<double, double> betas, double eps,
             double weight_decay, bool amsgrad)
    : AdamW(std::move(params), AdamWOptions{lr, betas, eps, weight_decay, amsgrad, false}) {}

AdamWOptions AdamW::options() const {
  AdamWOptions o = options_;
  o.lr = lr();
  return o;
}

Hyperparameters AdamW::hyperparameters() const { return adam_hyper("AdamW", lr(), options_); }

void AdamW::update(const core::Tensor& param, const core::Tensor& grad, ParamState& state) {
  const AdamConfig c{lr(), options_.betas.first, options_.betas.second, options_.eps, options_.weight_decay,
                     options_.amsgrad, options_.maximize, true};
  adam_update(c, param, grad, state.step, state.slots);
}

}  // namespace moegrad::optim
