// Module: named parameters, buffers and child modules, in registration order, with PyTorch's
// dotted names ("experts.0.net.0.weight"), train/eval, and state_dict / load_state_dict.
// Modules are held by shared_ptr and are not copyable.
#pragma once
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "autograd/autograd.h"
#include "layers/state_dict.h"

namespace moegrad::nn {

using ag::Variable;
using core::DType;
using core::Shape;
using core::Tensor;
using core::TensorOptions;

// One state_dict key and the tensor behind it: a parameter or a persistent buffer of the
// module, whole or one slice of it. A stacked expert weight "experts.w_in" [E, 2h, d] gives E
// entries "experts.experts.<i>.net.0.weight", each with index {i} (the view w_in[i], [2h, d]).
struct StateEntry {
  std::string key;                  // the state_dict key
  std::string name;                 // the parameter's or buffer's dotted name from the root
  Variable parameter;               // defined for a parameter
  Tensor buffer;                    // defined for a persistent buffer
  std::vector<std::int64_t> index;  // one index per leading dim; empty: the whole tensor

  bool is_parameter() const { return parameter.defined(); }
  const Tensor& source() const { return is_parameter() ? parameter.value() : buffer; }
  // The key's view of `whole`, a tensor of the source's shape: its value, its gradient, or
  // state that follows it (an optimizer slot).
  Tensor view(const Tensor& whole) const;
};

class Module {
 public:
  Module() = default;
  virtual ~Module() = default;
  Module(const Module&) = delete;
  Module& operator=(const Module&) = delete;

  // ---- registration (names: non-empty, no '.', unique among this module's entries) ----------
  // The variable becomes a parameter: it must be a floating leaf; requires_grad is set on.
  // Modules read their parameters through parameter(name) when they run, so a later
  // set_parameter (weight tying, functional calls, gradient checks) takes effect.
  Variable register_parameter(const std::string& name, Variable value);
  Variable register_parameter(const std::string& name, Tensor value);
  // A non-trainable tensor; persistent buffers appear in state_dict().
  Tensor register_buffer(const std::string& name, Tensor value, bool persistent = true);
  template <class M>
  std::shared_ptr<M> register_module(const std::string& name, std::shared_ptr<M> module) {
    add_child(name, module);
    return module;
  }

  // ---- lookup (dotted names reach into children) -------------------------------------------
  const Variable& parameter(const std::string& name) const;  // throws "[Linear] no parameter 'x'"
  const Tensor& buffer(const std::string& name) const;
  std::shared_ptr<Module> child(const std::string& name) const;
  bool has_parameter(const std::string& name) const;
  // Replaces a registered parameter with another leaf of the same shape, dtype and device.
  void set_parameter(const std::string& name, Variable value);
  void set_buffer(const std::string& name, Tensor value);  // same shape, dtype and device

  // ---- the tree ------------------------------------------------------------------------------
  // Parameters of this module then of each child (recursively), in registration order; a
  // parameter shared by two modules is listed once (under its first name).
  std::vector<std::pair<std::string, Variable>> named_parameters(bool recurse = true) const;
  std::vector<Variable> parameters(bool recurse = true) const;
  std::vector<std::pair<std::string, Tensor>> named_buffers(bool recurse = true) const;
  std::vector<std::pair<std::string, std::shared_ptr<Module>>> named_children() const;
  std::vector<std::shared_ptr<Module>> children() const;
  // Every descendant (not this module) with its dotted path, depth first, pre-order.
  std::vector<std::pair<std::string, std::shared_ptr<Module>>> named_modules() const;
  // fn on every child (recursively, children first) and then on this module, like PyTorch.
  void apply(const std::function<void(Module&)>& fn);
  std::int64_t num_parameters() const;  // total elements of parameters()

  // ---- devices -------------------------------------------------------------------------------
  // Moves every parameter and buffer of this module and its descendants to `device` (a copy;
  // tensors already there are left as they are), like PyTorch's module.to(device):
  // - parameters keep their names, requires_grad and identity: each Variable is updated in
  //   place, so handles from named_parameters() (an optimizer's, tied parameters) stay valid
  //   and see the moved value; a defined gradient moves with its parameter;
  // - buffers keep their names and persistence; their new tensors replace the old ones;
  // - Tensor handles taken earlier (parameter(name).value(), state_dict() entries) and graphs
  //   recorded earlier keep the old storage: move a module before running it, not halfway
  //   through a forward/backward. Storage shared between two different entries is not shared
  //   after the move.
  // Returns *this.
  Module& to(core::Device device);
  // The device of the parameters and buffers (cpu for a module without any). Throws
  // "[<name>] tensors on several devices: cpu (weight) and cuda:0 (bias)" when they differ.
  core::Device device() const;

  // ---- modes and gradients ------------------------------------------------------------------
  virtual void train(bool on = true);  // this module and every descendant
  void eval() { train(false); }
  bool is_training() const { return training_; }
  void zero_grad();  // drops every parameter's gradient

  // ---- checkpoints --------------------------------------------------------------------------
  // Parameters and persistent buffers under their PyTorch key names and shapes. The tensors
  // alias the module's storage (use nn::clone(sd) for a snapshot).
  StateDict state_dict() const;
  // Copies values in place. Every key is checked first and nothing is copied unless all are
  // fine: shape and dtype mismatches always throw; missing and unexpected keys throw when
  // strict, and are returned in the report otherwise. One moegrad::Error lists every problem.
  LoadReport load_state_dict(const StateDict& state, bool strict = true);
  // Each parameter's gradient under its state_dict key and shape (zeros where backward left
  // none), so gradients compare and export by PyTorch's names.
  StateDict grad_dict() const;

  // The one mapping between the tensors a module stores and the keys and shapes it exposes:
  // every state_dict key with the parameter or buffer behind it, in state_dict order.
  // state_dict, load_state_dict, grad_dict and the optimizer's state under PyTorch's names
  // (optim/module_state.h) all go through it.
  std::vector<StateEntry> state_entries() const;
  // The hook behind state_entries. The default lists this module's parameters, then its
  // persistent buffers (each whole, key = name), then its children's entries. A module that
  // stores state under other names or shapes (stacked expert weights [E, ...] exposed as
  // per-expert keys) overrides it and lists slices.
  virtual void collect_entries(const std::string& prefix, std::vector<StateEntry>& out) const;

  // ---- printing -----------------------------------------------------------------------------
  virtual std::string name() const { return "Module"; }
  virtual std::string extra_repr() const { return ""; }  // "in_features=4, out_features=8, bias=True"
  // The module tree like PyTorch's repr, with each parameter's dtype and shape.
  std::string to_string() const;

 protected:
  // The default hook's halves, for overrides that handle part of the state themselves.
  void collect_own_entries(const std::string& prefix, std::vector<StateEntry>& out) const;  // params + buffers
  void collect_children_entries(const std::string& prefix, std::vector<StateEntry>& out) const;
  // Gives this module's own parameter `name` a new value of any shape (same dtype and device),
  // keeping the Variable (handles taken earlier see it) and dropping its gradient: expert
  // placement keeps a slice of stacked expert weights this way.
  void resize_parameter(const std::string& name, Tensor value);

 private:
  struct BufferSlot {
    std::string name;
    Tensor value;
    bool persistent;
  };
  void add_child(const std::string& name, std::shared_ptr<Module> module);
  void check_new_name(const std::string& name, const char* what) const;
  // The module owning the last component of a dotted name, and that component. A missing
  // child throws when must is set, and gives a null module otherwise.
  std::pair<const Module*, std::string> resolve(const std::string& dotted, bool must = true) const;
  struct ParameterSlot {
    Module* owner = nullptr;
    Variable* slot = nullptr;
  };
  ParameterSlot find_parameter(const std::string& name, bool must) const;
  void repr_into(std::string& out, int indent) const;

  bool training_ = true;
  std::vector<std::pair<std::string, Variable>> params_;
  std::vector<BufferSlot> buffers_;
  std::vector<std::pair<std::string, std::shared_ptr<Module>>> children_;
};

// A module with one input and one output: the common interface of the building blocks.
class UnaryModule : public Module {
 public:
  virtual Variable forward(const Variable& x) = 0;
  Variable operator()(const Variable& x) { return forward(x); }
};

// "True" / "False", as PyTorch's repr prints booleans.
inline const char* py_bool(bool b) { return b ? "True" : "False"; }

}  // namespace moegrad::nn
