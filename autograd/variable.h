// Variable: a tensor value plus what reverse-mode autograd needs (grad, grad_fn).
// A cheap handle; copies share the same variable.
#pragma once
#include <memory>
#include <string>

#include "core/ops.h"

namespace moegrad::ag {

using core::DType;
using core::Device;
using core::Shape;
using core::Tensor;

struct Node;

struct VariableImpl {
  Tensor value;
  Tensor grad;  // undefined until a backward pass reaches this leaf
  bool requires_grad = false;
  std::shared_ptr<Node> grad_fn;  // null for leaves and constants
};

class Variable {
 public:
  Variable() = default;
  // A leaf. requires_grad = true makes it a parameter-like input that accumulates .grad.
  explicit Variable(Tensor value, bool requires_grad = false);
  Variable(Tensor value, std::shared_ptr<Node> grad_fn);  // an op result (used by record)

  bool defined() const { return impl_ != nullptr; }
  const Tensor& value() const;
  const Tensor& grad() const;
  void set_grad(Tensor grad) const;
  void zero_grad() const;  // drops the gradient (undefined), like set_to_none
  bool requires_grad() const { return impl_ && impl_->requires_grad; }
  void set_requires_grad(bool on) const;  // leaves only
  const std::shared_ptr<Node>& grad_fn() const;
  bool is_leaf() const { return !grad_fn(); }
  // Same value, cut from the graph.
  Variable detach() const { return Variable(value(), false); }
  // Backward from this variable: it must be a scalar unless a gradient is given
  // (same shape as the value). Frees the graph it walked.
  void backward(const Tensor& grad = {}) const;

  const Shape& shape() const { return value().shape(); }
  std::int64_t dim() const { return value().dim(); }
  std::int64_t size(std::int64_t d) const { return value().size(d); }
  std::int64_t numel() const { return value().numel(); }
  DType dtype() const { return value().dtype(); }
  Device device() const { return value().device(); }
  template <class T> T item() const { return value().item<T>(); }

  const std::shared_ptr<VariableImpl>& impl() const { return impl_; }

 private:
  std::shared_ptr<VariableImpl> impl_;
};

// A constant (no gradient) from a tensor.
inline Variable constant(Tensor value) { return Variable(std::move(value), false); }

// While alive, ops record no graph (results do not require grad). Nests; per thread.
class NoGradGuard {
 public:
  NoGradGuard();
  ~NoGradGuard();
  NoGradGuard(const NoGradGuard&) = delete;
  NoGradGuard& operator=(const NoGradGuard&) = delete;

 private:
  bool previous_;
};
bool grad_mode_enabled();

// Anomaly mode (for hunting NaN/Inf): while a guard lives, every op checks its forward result
// and the engine checks every gradient a backward produces; the first non-finite one throws
//   [anomaly] forward of 'log' produced NaN/Inf: f32(4, 8)
//   [anomaly] backward of 'div' produced NaN/Inf in the gradient of input 1: f32(4, 8)
// It costs a pass over every tensor, so it is off by default (the trainer re-runs a failing
// step with it to name the op).
class AnomalyModeGuard {
 public:
  AnomalyModeGuard();
  ~AnomalyModeGuard();
  AnomalyModeGuard(const AnomalyModeGuard&) = delete;
  AnomalyModeGuard& operator=(const AnomalyModeGuard&) = delete;

 private:
  bool previous_;
};
bool anomaly_mode_enabled();

}  // namespace moegrad::ag
