// SGD: validation like PyTorch's constructor, and the fused update.
#include "optim/sgd.h"

#include "core/ops.h"
#include "optim/fused_cpu.h"
#include "optim/update_math.h"

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
  core::visit_floating(param.dtype(), "SGD", [&](auto tag) {
    using T = typename decltype(tag)::type;
    math::SgdStep<T> f;
    f.neg_lr = static_cast<T>(-lr());
    f.weight_decay = static_cast<T>(options_.weight_decay);
    f.momentum = static_cast<T>(options_.momentum);
    f.one_minus_dampening = static_cast<T>(1 - options_.dampening);
    f.use_weight_decay = options_.weight_decay != 0;
    f.nesterov = options_.nesterov;
    f.maximize = options_.maximize;
    f.first = state.step == 1;
    const std::int64_t n = param.numel();
    if (options_.momentum == 0)
      cpu::for_each_element(n, f, param.data<T>(), grad.data<T>());
    else
      cpu::for_each_element(n, f, param.data<T>(), grad.data<T>(), state.slots[0].data<T>());
  });
}

}  // namespace moegrad::optim
