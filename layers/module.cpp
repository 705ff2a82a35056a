#include "layers/module.h"

#include <fmt/format.h>

#include <optional>
#include <unordered_map>
#include <unordered_set>

namespace moegrad::nn {

namespace {

std::string join_name(const std::string& prefix, const std::string& name) {
  return prefix.empty() ? name : prefix + "." + name;
}

}  // namespace

// ---- registration --------------------------------------------------------------------------

void Module::check_new_name(const std::string& name, const char* what) const {
  const std::string op = this->name();
  MOEGRAD_CHECK(!name.empty() && name.find('.') == std::string::npos, op.c_str(),
                "{} name '{}' must be non-empty and contain no '.'", what, name);
  bool taken = false;
  for (const auto& p : params_) taken = taken || p.first == name;
  for (const auto& b : buffers_) taken = taken || b.name == name;
  for (const auto& c : children_) taken = taken || c.first == name;
  MOEGRAD_CHECK(!taken, op.c_str(), "cannot register {} '{}': the name is already taken", what, name);
}

Variable Module::register_parameter(const std::string& name, Variable value) {
  check_new_name(name, "parameter");
  const std::string op = this->name();
  MOEGRAD_CHECK(value.defined(), op.c_str(), "parameter '{}' is undefined", name);
  MOEGRAD_CHECK(value.is_leaf(), op.c_str(), "parameter '{}' must be a leaf variable", name);
  value.set_requires_grad(true);
  params_.emplace_back(name, value);
  return value;
}

Variable Module::register_parameter(const std::string& name, Tensor value) {
  const std::string op = this->name();
  MOEGRAD_CHECK(value.defined(), op.c_str(), "parameter '{}' is undefined", name);
  return register_parameter(name, Variable(std::move(value), true));
}

Tensor Module::register_buffer(const std::string& name, Tensor value, bool persistent) {
  check_new_name(name, "buffer");
  const std::string op = this->name();
  MOEGRAD_CHECK(value.defined(), op.c_str(), "buffer '{}' is undefined", name);
  buffers_.push_back({name, value, persistent});
  return value;
}

void Module::add_child(const std::string& name, std::shared_ptr<Module> module) {
  check_new_name(name, "module");
  const std::string op = this->name();
  MOEGRAD_CHECK(module != nullptr, op.c_str(), "child module '{}' is null", name);
  MOEGRAD_CHECK(module.get() != this, op.c_str(), "a module cannot be its own child ('{}')", name);
  children_.emplace_back(name, std::move(module));
}

// ---- lookup --------------------------------------------------------------------------------

std::pair<const Module*, std::string> Module::resolve(const std::string& dotted, bool must) const {
  const Module* m = this;
  std::string rest = dotted;
  for (auto dot = rest.find('.'); dot != std::string::npos; dot = rest.find('.')) {
    const std::string head = rest.substr(0, dot);
    const Module* next = nullptr;
    for (const auto& c : m->children_)
      if (c.first == head) next = c.second.get();
    if (next == nullptr && !must) return {nullptr, rest};
    const std::string op = m->name();
    MOEGRAD_CHECK(next != nullptr, op.c_str(), "no child module '{}' (looking up '{}')", head, dotted);
    m = next;
    rest = rest.substr(dot + 1);
  }
  return {m, rest};
}

// The owner and slot of a dotted parameter name; a null slot when absent and !must.
Module::ParameterSlot Module::find_parameter(const std::string& name, bool must) const {
  auto [cm, leaf] = resolve(name, must);
  if (cm == nullptr) return {};
  auto* m = const_cast<Module*>(cm);  // params_ of a module reached from this one
  for (auto& p : m->params_)
    if (p.first == leaf) return {m, &p.second};
  const std::string op = m->name();
  MOEGRAD_CHECK(!must, op.c_str(), "no parameter '{}'", name);
  return {m, nullptr};
}

const Variable& Module::parameter(const std::string& name) const { return *find_parameter(name, true).slot; }

bool Module::has_parameter(const std::string& name) const { return find_parameter(name, false).slot != nullptr; }

const Tensor& Module::buffer(const std::string& name) const {
  auto [m, leaf] = resolve(name);
  for (const auto& b : m->buffers_)
    if (b.name == leaf) return b.value;
  const std::string op = m->name();
  fail(op.c_str(), "no buffer '{}'", name);
}

std::shared_ptr<Module> Module::child(const std::string& name) const {
  auto [m, leaf] = resolve(name);
  for (const auto& c : m->children_)
    if (c.first == leaf) return c.second;
  const std::string op = m->name();
  fail(op.c_str(), "no child module '{}'", name);
}

void Module::set_parameter(const std::string& name, Variable value) {
  auto [m, slot] = find_parameter(name, true);
  const std::string op = m->name();
  MOEGRAD_CHECK(value.defined() && value.is_leaf(), op.c_str(), "parameter '{}' must be set to a defined leaf", name);
  const Tensor& old = slot->value();
  const Tensor& nv = value.value();
  MOEGRAD_CHECK(nv.shape() == old.shape() && nv.dtype() == old.dtype() && nv.device() == old.device(), op.c_str(),
                "parameter '{}' is {} on {}, cannot set it to {} on {}", name, core::describe(old), old.device().str(),
                core::describe(nv), nv.device().str());
  value.set_requires_grad(true);
  *slot = std::move(value);
}

void Module::resize_parameter(const std::string& name, Tensor value) {
  const std::string op = this->name();
  for (auto& [n, v] : params_) {
    if (n != name) continue;
    const Tensor& old = v.value();
    MOEGRAD_CHECK(value.defined() && value.dtype() == old.dtype() && value.device() == old.device(), op.c_str(),
                  "parameter '{}' is {} on {}, cannot give it {}", name, core::describe(old), old.device().str(),
                  value.defined() ? core::describe(value) : std::string("an undefined value"));
    v.impl()->value = std::move(value);
    v.impl()->grad = Tensor();
    return;
  }
  fail(op.c_str(), "no parameter '{}'", name);
}

void Module::set_buffer(const std::string& name, Tensor value) {
  auto [cm, leaf] = resolve(name);
  auto* m = const_cast<Module*>(cm);
  const std::string op = m->name();
  for (auto& b : m->buffers_) {
    if (b.name != leaf) continue;
    MOEGRAD_CHECK(value.defined() && value.shape() == b.value.shape() && value.dtype() == b.value.dtype() &&
                      value.device() == b.value.device(),
                  op.c_str(), "buffer '{}' is {}, cannot set it to {}", name, core::describe(b.value),
                  value.defined() ? core::describe(value) : std::string("undefined"));
    b.value = std::move(value);
    return;
  }
  fail(op.c_str(), "no buffer '{}'", name);
}

// ---- the tree ------------------------------------------------------------------------------

std::vector<std::pair<std::string, Variable>> Module::named_parameters(bool recurse) const {
  std::vector<std::pair<std::string, Variable>> out;
  std::unordered_set<const void*> seen;
  std::function<void(const Module&, const std::string&)> walk = [&](const Module& m, const std::string& prefix) {
    for (const auto& [n, v] : m.params_)
      if (seen.insert(v.impl().get()).second) out.emplace_back(join_name(prefix, n), v);
    if (!recurse) return;
    for (const auto& [n, c] : m.children_) walk(*c, join_name(prefix, n));
  };
  walk(*this, "");
  return out;
}

std::vector<Variable> Module::parameters(bool recurse) const {
  std::vector<Variable> out;
  for (auto& [n, v] : named_parameters(recurse)) out.push_back(v);
  return out;
}

std::vector<std::pair<std::string, Tensor>> Module::named_buffers(bool recurse) const {
  std::vector<std::pair<std::string, Tensor>> out;
  std::function<void(const Module&, const std::string&)> walk = [&](const Module& m, const std::string& prefix) {
    for (const auto& b : m.buffers_) out.emplace_back(join_name(prefix, b.name), b.value);
    if (!recurse) return;
    for (const auto& [n, c] : m.children_) walk(*c, join_name(prefix, n));
  };
  walk(*this, "");
  return out;
}

std::vector<std::pair<std::string, std::shared_ptr<Module>>> Module::named_children() const { return children_; }

std::vector<std::shared_ptr<Module>> Module::children() const {
  std::vector<std::shared_ptr<Module>> out;
  for (const auto& c : children_) out.push_back(c.second);
  return out;
}

std::vector<std::pair<std::string, std::shared_ptr<Module>>> Module::named_modules() const {
  std::vector<std::pair<std::string, std::shared_ptr<Module>>> out;
  std::function<void(const Module&, const std::string&)> walk = [&](const Module& m, const std::string& prefix) {
    for (const auto& [n, c] : m.children_) {
      out.emplace_back(join_name(prefix, n), c);
      walk(*c, join_name(prefix, n));
    }
  };
  walk(*this, "");
  return out;
}

void Module::apply(const std::function<void(Module&)>& fn) {
  for (auto& c : children_) c.second->apply(fn);
  fn(*this);
}

std::int64_t Module::num_parameters() const {
  std::int64_t n = 0;
  for (const auto& v : parameters()) n += v.numel();
  return n;
}

// ---- devices -------------------------------------------------------------------------------

Module& Module::to(core::Device device) {
  ag::NoGradGuard no_grad;
  std::unordered_set<const void*> moved;  // tied parameters move once
  std::function<void(Module&)> walk = [&](Module& m) {
    for (auto& [n, v] : m.params_) {
      if (!moved.insert(v.impl().get()).second) continue;
      ag::VariableImpl& impl = *v.impl();
      impl.value = core::to_device(impl.value, device);
      if (impl.grad.defined()) impl.grad = core::to_device(impl.grad, device);
    }
    for (auto& b : m.buffers_) b.value = core::to_device(b.value, device);
    for (auto& [n, c] : m.children_) walk(*c);
  };
  walk(*this);
  return *this;
}

core::Device Module::device() const {
  std::optional<std::pair<core::Device, std::string>> first;
  auto see = [&](const core::Tensor& t, const std::string& name) {
    if (!first) {
      first.emplace(t.device(), name);
      return;
    }
    const std::string op = this->name();
    MOEGRAD_CHECK(t.device() == first->first, op.c_str(), "tensors on several devices: {} ({}) and {} ({})",
                  first->first.str(), first->second, t.device().str(), name);
  };
  for (const auto& [n, v] : named_parameters()) see(v.value(), n);
  for (const auto& [n, b] : named_buffers()) see(b, n);
  return first ? first->first : core::Device::cpu();
}

// ---- modes and gradients -------------------------------------------------------------------

void Module::train(bool on) {
  training_ = on;
  for (auto& c : children_) c.second->train(on);
}

void Module::zero_grad() {
  for (const auto& v : parameters()) v.zero_grad();
}

// ---- checkpoints ---------------------------------------------------------------------------

Tensor StateEntry::view(const Tensor& whole) const {
  Tensor v = whole;
  for (const std::int64_t i : index) v = core::select(v, 0, i);
  return v;
}

void Module::collect_own_entries(const std::string& prefix, std::vector<StateEntry>& out) const {
  for (const auto& [n, v] : params_) out.push_back({prefix + n, prefix + n, v, Tensor(), {}});
  for (const auto& b : buffers_)
    if (b.persistent) out.push_back({prefix + b.name, prefix + b.name, Variable(), b.value, {}});
}

void Module::collect_children_entries(const std::string& prefix, std::vector<StateEntry>& out) const {
  for (const auto& [n, c] : children_) c->collect_entries(prefix + n + ".", out);
}

void Module::collect_entries(const std::string& prefix, std::vector<StateEntry>& out) const {
  collect_own_entries(prefix, out);
  collect_children_entries(prefix, out);
}

std::vector<StateEntry> Module::state_entries() const {
  std::vector<StateEntry> out;
  collect_entries("", out);
  return out;
}

StateDict Module::state_dict() const {
  StateDict out;
  for (const StateEntry& e : state_entries()) out.insert(e.key, e.view(e.source()));
  return out;
}

StateDict Module::grad_dict() const {
  StateDict out;
  std::unordered_map<const void*, Tensor> zeros;  // one zero gradient per parameter without one
  for (const StateEntry& e : state_entries()) {
    if (!e.is_parameter()) continue;
    Tensor g = e.parameter.grad();
    if (!g.defined()) {
      Tensor& z = zeros[e.parameter.impl().get()];
      if (!z.defined()) z = core::zeros_like(e.parameter.value());
      g = z;
    }
    out.insert(e.key, e.view(g));
  }
  return out;
}

LoadReport Module::load_state_dict(const StateDict& state, bool strict) {
  LoadReport report;
  for (const StateEntry& e : state_entries()) report.load(state, e.key, e.view(e.source()));
  for (const auto& [key, value] : state)
    if (!report.consumed(key)) report.unexpected_keys.push_back(key);
  if (!report.ok(strict)) throw Error(report.message(strict));
  ag::NoGradGuard no_grad;
  report.apply();
  return report;
}

// ---- printing ------------------------------------------------------------------------------

void Module::repr_into(std::string& out, int indent) const {
  const std::string pad(static_cast<std::size_t>(indent + 2), ' ');
  std::vector<std::string> own;
  for (const auto& [n, v] : params_) own.push_back(fmt::format("{} {}", n, core::describe(v.value())));
  for (const auto& b : buffers_)
    own.push_back(fmt::format("{} {} (buffer{})", b.name, core::describe(b.value), b.persistent ? "" : ", not persistent"));
  out += name() + "(";
  if (children_.empty()) {
    out += extra_repr() + ")";
    if (!own.empty()) {
      out += " [";
      for (std::size_t i = 0; i < own.size(); ++i) out += (i ? ", " : "") + own[i];
      out += "]";
    }
    return;
  }
  out += "\n";
  if (!extra_repr().empty()) out += pad + extra_repr() + "\n";
  for (const auto& o : own) out += pad + o + "\n";
  for (const auto& [n, c] : children_) {
    out += pad + "(" + n + "): ";
    c->repr_into(out, indent + 2);
    out += "\n";
  }
  out += std::string(static_cast<std::size_t>(indent), ' ') + ")";
}

std::string Module::to_string() const {
  std::string out;
  repr_into(out, 0);
  return out;
}

}  // namespace moegrad::nn
