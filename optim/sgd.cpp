// SGD: validation like PyTorch's constructor, and the fused update.
#include "optim/sgd.h"

#include "core/ops.h"
#include "core/ops/fused_update.h"

namespace moegrad::optim {

namespace {

const SGDOptions& validated(const SGDOptions& o) {
  const char* op = "SGD";
  MOEGRAD_CHECK(o.momentum >= 0, op, "invalid momentum {}: must be >= 0", o.momentum);
  MOEGRAD_CHECK(o.weight_decay >= 0, op, "invalid weight_decay {}: must be >= 0", o.weight_decay);
  MOEGRAD_CHECK(!std::isnan(o.dampening), op, "invalid dampening {}", o.dampening);
  MOEGRAD_CHECK(!o.nesterov || (o.momentum > 0 && o.dampening == 0), op,
                "nesterov momentum requires momentum > 0 and dampening 0 (got momentum {}, dampening {})",
                o.momentum, o.dampening);
  return o;
}

}  // namespace

SGD::SGD(NamedParameters params, const SGDOptions& options)
    : Optimizer("SGD", std::move(params), options.lr), options_(validated(options)) {
  if (options_.momentum != 0) init_slots({"momentum_buffer"});
}

SGD::SGD(NamedParameters params, double lr, double momentum, double dampening, double weight_decay,
         bool nesterov, bool maximize)
    : SGD(std::move(params), SGDOptions{lr, momentum, dampening, weight_decay, nesterov, maximize}) {}

SGDOptions SGD::options() const {
  SGDOptions o = options_;
  o.lr = lr();
  return o;
}

Hyperparameters SGD::hyperparameters() const {
  return {"SGD",
          {{"lr", lr()},
           {"momentum", options_.momentum},
           {"dampening", options_.dampening},
           {"weight_decay", options_.weight_decay},
           {"nesterov", options_.nesterov},
           {"maximize", options_.maximize}}};
}

void SGD::update(const core::Tensor& param, const core::Tensor& grad, ParamState& state) {
  // Coefficients in double; core::sgd_update_ casts them to the parameter's dtype once.
  core::optim_math::SgdStep<double> f;
  f.neg_lr = -lr();
  f.weight_decay = options_.weight_decay;
  f.momentum = options_.momentum;
  f.one_minus_dampening = 1 - options_.dampening;
  f.use_weight_decay = options_.weight_decay != 0;
  f.nesterov = options_.nesterov;
  f.maximize = options_.maximize;
  f.first = state.step == 1;
  core::sgd_update_(param, grad, options_.momentum == 0 ? core::Tensor{} : state.slots[0], f);
}

}  // namespace moegrad::optim
