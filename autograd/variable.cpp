#include "autograd/variable.h"

#include "autograd/node.h"

namespace moegrad::ag {
namespace {
thread_local bool g_grad_mode = true;
thread_local bool g_anomaly_mode = false;
}  // namespace

AnomalyModeGuard::AnomalyModeGuard() : previous_(g_anomaly_mode) { g_anomaly_mode = true; }
AnomalyModeGuard::~AnomalyModeGuard() { g_anomaly_mode = previous_; }
bool anomaly_mode_enabled() { return g_anomaly_mode; }

bool grad_mode_enabled() { return g_grad_mode; }
NoGradGuard::NoGradGuard() : previous_(g_grad_mode) { g_grad_mode = false; }
NoGradGuard::~NoGradGuard() { g_grad_mode = previous_; }

Variable::Variable(Tensor value, bool requires_grad) : impl_(std::make_shared<VariableImpl>()) {
  MOEGRAD_CHECK(value.defined(), "Variable", "value tensor is undefined");
  MOEGRAD_CHECK(!requires_grad || core::is_floating(value.dtype()), "Variable",
                "only f32/f64 tensors can require grad, got {}", core::describe(value));
  impl_->value = std::move(value);
  impl_->requires_grad = requires_grad;
}

Variable::Variable(Tensor value, std::shared_ptr<Node> grad_fn) : impl_(std::make_shared<VariableImpl>()) {
  impl_->value = std::move(value);
  impl_->requires_grad = true;
  impl_->grad_fn = std::move(grad_fn);
}

const Tensor& Variable::value() const {
  MOEGRAD_CHECK(impl_, "Variable", "variable is undefined");
  return impl_->value;
}
const Tensor& Variable::grad() const {
  MOEGRAD_CHECK(impl_, "Variable", "variable is undefined");
  return impl_->grad;
}
void Variable::set_grad(Tensor grad) const {
  MOEGRAD_CHECK(impl_, "Variable", "variable is undefined");
  MOEGRAD_CHECK(!grad.defined() || grad.shape() == impl_->value.shape(), "set_grad",
                "gradient {} does not match value {}", core::describe(grad), core::describe(impl_->value));
  impl_->grad = std::move(grad);
}
void Variable::zero_grad() const { set_grad(Tensor{}); }
void Variable::set_requires_grad(bool on) const {
  MOEGRAD_CHECK(impl_, "Variable", "variable is undefined");
  MOEGRAD_CHECK(is_leaf(), "set_requires_grad", "only leaves can change requires_grad");
  MOEGRAD_CHECK(!on || core::is_floating(impl_->value.dtype()), "set_requires_grad",
                "only f32/f64 tensors can require grad, got {}", core::describe(impl_->value));
  impl_->requires_grad = on;
}
const std::shared_ptr<Node>& Variable::grad_fn() const {
  static const std::shared_ptr<Node> none;
  return impl_ ? impl_->grad_fn : none;
}

bool any_requires_grad(std::initializer_list<Variable> inputs) {
  if (!grad_mode_enabled()) return false;
  for (const auto& v : inputs)
    if (v.requires_grad()) return true;
  return false;
}

Variable record(const char* name, Tensor value, const std::vector<Variable>& inputs, BackwardFn backward) {
  bool any = false;
  for (const auto& v : inputs) {
    MOEGRAD_CHECK(v.defined(), name, "input variable is undefined");
    any = any || v.requires_grad();
  }
  if (g_anomaly_mode && !core::all_finite(value)) fail("anomaly", "forward of '{}' produced NaN/Inf: {}", name, core::describe(value));
  if (!any || !grad_mode_enabled()) return Variable(std::move(value), false);
  auto node = std::make_shared<Node>();
  node->name = name;
  node->inputs.reserve(inputs.size());
  for (const auto& v : inputs) {
    Edge e;
    if (v.requires_grad()) {
      if (v.is_leaf())
        e.leaf = v.impl();
      else
        e.node = v.grad_fn();
    }
    e.shape = v.shape();
    e.dtype = v.dtype();
    node->inputs.push_back(std::move(e));
  }
  node->backward = std::move(backward);
  return Variable(std::move(value), std::move(node));
}

Variable record(const char* name, Tensor value, std::initializer_list<Variable> inputs, BackwardFn backward) {
  return record(name, std::move(value), std::vector<Variable>(inputs), std::move(backward));
}

}  // namespace moegrad::ag
