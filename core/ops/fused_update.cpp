// The fused optimizer updates: validate once, cast the functor to the parameter's dtype, run
// the FusedUpdateKernels (core/kernels/fused_update.h) of the parameter's device.
#include "core/ops/fused_update.h"

#include <initializer_list>
#include <utility>

#include "core/backend.h"
#include "core/kernels/fused_update.h"
#include "core/ops/dispatch.h"

namespace moegrad::core {
namespace {

using Named = std::pair<const char*, const Tensor*>;

// Every tensor defined, floating and contiguous, with the first one's dtype, shape and device
// (the first is the parameter, or the gradient for the clipping ops).
void check_operands(const char* op, std::initializer_list<Named> tensors) {
  const Named& first = *tensors.begin();
  for (const auto& [name, t] : tensors) {
    MOEGRAD_CHECK(t->defined(), op, "{} tensor is undefined", name);
    MOEGRAD_CHECK(is_floating(t->dtype()), op, "{} is {}: only f32/f64 can be updated", name, describe(*t));
    MOEGRAD_CHECK(t->is_contiguous(), op, "{} {} is not contiguous", name, describe(*t));
    if (t == first.second) continue;
    const Tensor& p = *first.second;
    MOEGRAD_CHECK(t->dtype() == p.dtype() && t->shape() == p.shape(), op, "{} {} does not match {} {}", name,
                  describe(*t), first.first, describe(p));
    MOEGRAD_CHECK(t->device() == p.device(), op, "{} is on {}, {} on {}", name, t->device().str(), first.first,
                  p.device().str());
  }
}

}  // namespace

void sgd_update_(const Tensor& param, const Tensor& grad, const Tensor& momentum_buffer,
                 const optim_math::SgdStep<double>& step) {
  const char* op = "sgd_update_";
  const bool momentum = momentum_buffer.defined();
  if (momentum)
    check_operands(op, {{"param", &param}, {"grad", &grad}, {"momentum_buffer", &momentum_buffer}});
  else
    check_operands(op, {{"param", &param}, {"grad", &grad}});
  const Device device = param.device();
  const std::int64_t n = param.numel();
  visit_floating(param.dtype(), op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    const optim_math::SgdStep<T> f = step.as<T>();
    T* buf = momentum ? momentum_buffer.data<T>() : nullptr;
    backend<FusedUpdateKernels<T>>(op, device).sgd(device.index, n, f, param.data<T>(), grad.data<T>(), buf);
  });
}

void adam_update_(const Tensor& param, const Tensor& grad, const Tensor& exp_avg, const Tensor& exp_avg_sq,
                  const Tensor& max_exp_avg_sq, const optim_math::AdamStep<double>& step) {
  const char* op = "adam_update_";
  const bool amsgrad = max_exp_avg_sq.defined();
  if (amsgrad)
    check_operands(op, {{"param", &param},
                        {"grad", &grad},
                        {"exp_avg", &exp_avg},
                        {"exp_avg_sq", &exp_avg_sq},
                        {"max_exp_avg_sq", &max_exp_avg_sq}});
  else
    check_operands(op, {{"param", &param}, {"grad", &grad}, {"exp_avg", &exp_avg}, {"exp_avg_sq", &exp_avg_sq}});
  const Device device = param.device();
  const std::int64_t n = param.numel();
  visit_floating(param.dtype(), op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    const optim_math::AdamStep<T> f = step.as<T>();
    T* vmax = amsgrad ? max_exp_avg_sq.data<T>() : nullptr;
    backend<FusedUpdateKernels<T>>(op, device)
        .adam(device.index, n, f, param.data<T>(), grad.data<T>(), exp_avg.data<T>(), exp_avg_sq.data<T>(), vmax);
  });
}

void grad_scale_(const Tensor& grad, double coef) {
  const char* op = "grad_scale_";
  check_operands(op, {{"grad", &grad}});
  const Device device = grad.device();
  visit_floating(grad.dtype(), op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    const optim_math::Scale<T> f{static_cast<T>(coef)};
    backend<FusedUpdateKernels<T>>(op, device).scale(device.index, grad.numel(), f, grad.data<T>());
  });
}

void grad_clamp_(const Tensor& grad, double lo, double hi) {
  const char* op = "grad_clamp_";
  check_operands(op, {{"grad", &grad}});
  MOEGRAD_CHECK(!(lo > hi), op, "lo {} is above hi {}", lo, hi);
  const Device device = grad.device();
  visit_floating(grad.dtype(), op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    const optim_math::ClampValue<T> f{static_cast<T>(lo), static_cast<T>(hi)};
    backend<FusedUpdateKernels<T>>(op, device).clamp(device.index, grad.numel(), f, grad.data<T>());
  });
}

}  // namespace moegrad::core
