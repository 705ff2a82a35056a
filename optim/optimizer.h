// Optimizer: the base of SGD, Adam and AdamW. It holds a module's named parameters and, per
// parameter, an update count and the state tensors ("slots") of its rule, keyed by the
// parameter's name; step() updates every parameter that has a gradient in place, with one
// fused pass per parameter and no autograd recording.
//
//   auto opt = optim::AdamW(model->named_parameters(), {.lr = 3e-4, .weight_decay = 0.1});
//   loss.backward();
//   optim::clip_grad_norm(opt.named_parameters(), 1.0);
//   opt.set_lr(schedule.lr_at(opt.step_count()));
//   opt.step();
//   opt.zero_grad();
//
// State export (state_dict) is an nn::StateDict with one entry per (parameter, slot):
//   "<param>/step"        0-d i64: the updates this parameter has received (PyTorch's
//                         per-parameter `step`; SGD counts too, PyTorch's SGD does not)
//   "<param>/<slot>"      the parameter's shape and dtype: momentum_buffer (SGD with
//                         momentum), exp_avg, exp_avg_sq, max_exp_avg_sq (Adam/AdamW, amsgrad)
//   "step_count"          0-d i64: step() calls
// Every key is always present: state is allocated (zeros) when the optimizer is built, and a
// slot whose parameter has step 0 has not been used yet (SGD then starts its momentum buffer
// as a copy of the first gradient, as PyTorch does).
//
// Devices: each parameter is updated on its own device by one fused kernel
// (core/ops/fused_update.h), and its state lives on the same device. A parameter moved after
// the optimizer was built (nn::Module::to keeps the Variables) takes its state along at the
// next step() or load_state_dict(); state_dict() gives the state where it lives, and
// load_state_dict() copies from any device.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "autograd/variable.h"
#include "layers/state_dict.h"

namespace moegrad::optim {

// A module's named_parameters(): dotted names, each a floating, contiguous leaf.
using NamedParameters = std::vector<std::pair<std::string, ag::Variable>>;

// A hyperparameter is a flag or a number.
using HyperValue = std::variant<bool, double>;

// An optimizer's configuration, for a checkpoint's config and for make_optimizer:
//   SGD:         lr, momentum, dampening, weight_decay, nesterov, maximize
//   Adam, AdamW: lr, beta1, beta2, eps, weight_decay, amsgrad, maximize
// (PyTorch's `betas` pair is beta1, beta2 here). lr is the current learning rate.
struct Hyperparameters {
  std::string optimizer;  // "SGD", "Adam" or "AdamW"
  std::vector<std::pair<std::string, HyperValue>> values;

  const HyperValue* find(const std::string& name) const;  // nullptr when absent
};

class Optimizer {
 public:
  virtual ~Optimizer() = default;
  Optimizer(const Optimizer&) = delete;
  Optimizer& operator=(const Optimizer&) = delete;

  const std::string& name() const { return name_; }  // "SGD", "Adam", "AdamW"

  // Updates, in place, every parameter whose gradient is defined; parameters without one are
  // skipped (their state and step are untouched), as in PyTorch. Every gradient is checked
  // (dtype, shape and device equal to the parameter's) before any parameter changes.
  // step_count() grows by one per call.
  void step();
  // Drops every parameter's gradient (PyTorch's set_to_none).
  void zero_grad();

  double lr() const { return lr_; }
  void set_lr(double lr);  // lr >= 0
  std::int64_t step_count() const { return step_count_; }

  const NamedParameters& named_parameters() const { return params_; }
  std::vector<ag::Variable> parameters() const;
  // The state tensors each parameter has, in state_dict order ("exp_avg", "exp_avg_sq", ...).
  const std::vector<std::string>& slot_names() const { return slot_names_; }
  // The updates parameter `name` has received; throws for an unknown name.
  std::int64_t parameter_step(const std::string& name) const;

  virtual Hyperparameters hyperparameters() const = 0;

  // The state under "<param>/<slot>", "<param>/step" and "step_count" (see above), in
  // parameter order. Slot tensors alias the optimizer's state (nn::clone for a snapshot).
  nn::StateDict state_dict() const;
  // Copies a state_dict back. Strict: the keys must be exactly this optimizer's (same
  // parameter names, same slots), slots must have their parameter's shape and dtype, steps
  // must be non-negative integers (0-d or one element; any numeric dtype). Everything is
  // checked before anything is copied, and one error lists every problem:
  //   [Adam] optimizer state: missing keys: w/exp_avg_sq; unexpected keys: v/exp_avg;
  //   shape mismatch: w/exp_avg (checkpoint (2, 3) vs parameter (3, 2))
  void load_state_dict(const nn::StateDict& state);

 protected:
  struct ParamState {
    std::int64_t step = 0;             // updates so far (already counts the current one in update())
    std::vector<core::Tensor> slots;   // slot_names() order, the parameter's shape and dtype
  };

  // Checks the parameters (non-empty, unique names without '/', distinct floating contiguous
  // leaves on one device kind) and lr.
  Optimizer(std::string name, NamedParameters params, double lr);
  // Allocates the slots (zeros) of every parameter; called once by the derived constructor.
  void init_slots(std::vector<std::string> slot_names);
  // One parameter's update; `grad` is contiguous with the parameter's dtype and shape, and
  // state.step has been incremented.
  virtual void update(const core::Tensor& param, const core::Tensor& grad, ParamState& state) = 0;

 private:
  std::string name_;
  NamedParameters params_;
  std::vector<ParamState> state_;
  std::vector<std::string> slot_names_;
  double lr_ = 0;
  std::int64_t step_count_ = 0;
};

// A step count stored as a tensor: one element holding a non-negative integer, of any numeric
// dtype (PyTorch keeps Adam's steps as f32 tensors). -1 when it is not one.
std::int64_t step_value(const core::Tensor& t);

// Builds SGD, Adam or AdamW from hyperparameters() output (a checkpoint's config). Absent
// values take the constructor's defaults (SGD needs lr); an unknown name, a flag given as a
// number or the reverse throws "[make_optimizer] ...".
std::unique_ptr<Optimizer> make_optimizer(NamedParameters params, const Hyperparameters& hp);

}  // namespace moegrad::optim
