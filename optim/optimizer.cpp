// Optimizer: parameters, per-parameter state by name, step(), state_dict / load_state_dict,
// and make_optimizer.
#include "optim/optimizer.h"

#include <fmt/format.h>

#include <cmath>
#include <unordered_map>
#include <unordered_set>

#include "core/ops.h"
#include "optim/adam.h"
#include "optim/sgd.h"

namespace moegrad::optim {

using core::Tensor;

namespace {

constexpr const char* kStepCountKey = "step_count";

Tensor int_scalar(std::int64_t v) { return core::from_vector<std::int64_t>({v}, core::Shape{}); }

}  // namespace

std::int64_t step_value(const Tensor& t) {
  if (t.numel() != 1) return -1;
  if (t.dtype() == core::DType::i64) return t.item<std::int64_t>();
  if (!core::is_floating(t.dtype())) return -1;
  const double v = t.item<double>();
  if (!(v >= 0) || v != std::floor(v) || v > 9.007199254740992e15) return -1;
  return static_cast<std::int64_t>(v);
}

const HyperValue* Hyperparameters::find(const std::string& name) const {
  for (const auto& [k, v] : values)
    if (k == name) return &v;
  return nullptr;
}

Optimizer::Optimizer(std::string name, NamedParameters params, double lr)
    : name_(std::move(name)), params_(std::move(params)) {
  const char* op = name_.c_str();
  MOEGRAD_CHECK(!params_.empty(), op, "got an empty parameter list");
  std::unordered_map<std::string, std::size_t> names;
  std::unordered_map<const ag::VariableImpl*, std::string> seen;
  for (std::size_t i = 0; i < params_.size(); ++i) {
    const auto& [pname, var] = params_[i];
    MOEGRAD_CHECK(!pname.empty(), op, "parameter {} has an empty name", i);
    MOEGRAD_CHECK(pname.find('/') == std::string::npos && pname != kStepCountKey, op,
                  "invalid parameter name '{}' (state keys are '<name>/<slot>')", pname);
    MOEGRAD_CHECK(names.emplace(pname, i).second, op, "duplicate parameter name '{}'", pname);
    MOEGRAD_CHECK(var.defined(), op, "parameter '{}' is undefined", pname);
    MOEGRAD_CHECK(var.is_leaf(), op, "can't optimize a non-leaf variable ('{}')", pname);
    const Tensor& v = var.value();
    MOEGRAD_CHECK(core::is_floating(v.dtype()), op, "parameter '{}' is {}: only f32/f64 can be optimized",
                  pname, core::describe(v));
    MOEGRAD_CHECK(v.is_contiguous(), op, "parameter '{}' ({}) is not contiguous", pname, core::describe(v));
    const auto [it, fresh] = seen.emplace(var.impl().get(), pname);
    MOEGRAD_CHECK(fresh, op, "parameter '{}' is the same variable as '{}'", pname, it->second);
  }
  set_lr(lr);
  state_.resize(params_.size());
}

void Optimizer::init_slots(std::vector<std::string> slot_names) {
  slot_names_ = std::move(slot_names);
  for (std::size_t i = 0; i < params_.size(); ++i) {
    state_[i].slots.clear();
    for (std::size_t s = 0; s < slot_names_.size(); ++s)
      state_[i].slots.push_back(core::zeros_like(params_[i].second.value()));
  }
}

void Optimizer::set_lr(double lr) {
  MOEGRAD_CHECK(!std::isnan(lr), name_.c_str(), "the learning rate is required (got nan)");
  MOEGRAD_CHECK(lr >= 0, name_.c_str(), "invalid learning rate {}: must be >= 0", lr);
  lr_ = lr;
}

std::vector<ag::Variable> Optimizer::parameters() const {
  std::vector<ag::Variable> out;
  out.reserve(params_.size());
  for (const auto& [n, v] : params_) out.push_back(v);
  return out;
}

std::int64_t Optimizer::parameter_step(const std::string& name) const {
  for (std::size_t i = 0; i < params_.size(); ++i)
    if (params_[i].first == name) return state_[i].step;
  fail(name_.c_str(), "no parameter '{}'", name);
}

void Optimizer::step() {
  const char* op = name_.c_str();
  // Check every parameter first, so a bad gradient leaves all parameters untouched.
  std::vector<std::size_t> todo;
  std::vector<Tensor> grads;
  for (std::size_t i = 0; i < params_.size(); ++i) {
    const auto& [pname, var] = params_[i];
    const Tensor& grad = var.grad();
    if (!grad.defined()) continue;
    const Tensor& p = var.value();
    MOEGRAD_CHECK(p.is_contiguous(), op, "parameter '{}' ({}) is not contiguous", pname, core::describe(p));
    MOEGRAD_CHECK(grad.dtype() == p.dtype() && grad.shape() == p.shape() && grad.device() == p.device(), op,
                  "gradient {} of parameter '{}' does not match the parameter {}", core::describe(grad), pname,
                  core::describe(p));
    for (const Tensor& s : state_[i].slots)
      MOEGRAD_CHECK(s.shape() == p.shape() && s.dtype() == p.dtype(), op,
                    "parameter '{}' is now {}, its state was made for {}", pname, core::describe(p),
                    core::describe(s));
    todo.push_back(i);
    grads.push_back(core::contiguous(grad));
  }
  for (std::size_t k = 0; k < todo.size(); ++k) {
    ParamState& st = state_[todo[k]];
    // The state follows its parameter: a module moved with Module::to after the optimizer was
    // built takes its state along on the next step.
    const core::Device device = params_[todo[k]].second.device();
    for (Tensor& s : st.slots) s = core::to_device(s, device);
    ++st.step;
    update(params_[todo[k]].second.value(), grads[k], st);
  }
  ++step_count_;
}

void Optimizer::zero_grad() {
  for (const auto& [n, v] : params_) v.zero_grad();
}

nn::StateDict Optimizer::state_dict() const {
  nn::StateDict sd;
  for (std::size_t i = 0; i < params_.size(); ++i) {
    const std::string& pname = params_[i].first;
    sd.insert(pname + "/step", int_scalar(state_[i].step));
    for (std::size_t s = 0; s < slot_names_.size(); ++s)
      sd.insert(pname + "/" + slot_names_[s], state_[i].slots[s]);
  }
  sd.insert(kStepCountKey, int_scalar(step_count_));
  return sd;
}

void Optimizer::load_state_dict(const nn::StateDict& in) {
  std::vector<std::string> missing, unexpected, shapes, dtypes, invalid;
  std::unordered_set<std::string> expected;
  std::vector<std::int64_t> steps(params_.size(), 0);
  std::int64_t step_count = 0;

  auto check_step = [&](const std::string& key, std::int64_t& out) {
    expected.insert(key);
    const Tensor* t = in.find(key);
    if (!t) {
      missing.push_back(key);
      return;
    }
    out = t->defined() ? step_value(*t) : -1;
    if (out < 0)
      invalid.push_back(t->defined() ? fmt::format("{} ({})", key, core::describe(*t)) : key + " (undefined)");
  };
  for (std::size_t i = 0; i < params_.size(); ++i) {
    const std::string& pname = params_[i].first;
    const Tensor& p = params_[i].second.value();
    check_step(pname + "/step", steps[i]);
    for (const std::string& slot : slot_names_) {
      const std::string key = pname + "/" + slot;
      expected.insert(key);
      const Tensor* t = in.find(key);
      if (!t) {
        missing.push_back(key);
      } else if (!t->defined()) {
        invalid.push_back(key + " (undefined)");
      } else if (t->shape() != p.shape()) {
        shapes.push_back(fmt::format("{} (checkpoint {} vs parameter {})", key, core::shape_str(t->shape()),
                                     core::shape_str(p.shape())));
      } else if (t->dtype() != p.dtype()) {
        dtypes.push_back(fmt::format("{} (checkpoint {} vs parameter {})", key, core::dtype_name(t->dtype()),
                                     core::dtype_name(p.dtype())));
      }
    }
  }
  check_step(kStepCountKey, step_count);
  for (const auto& [key, t] : in)
    if (!expected.count(key)) unexpected.push_back(key);

  std::vector<std::string> parts;
  auto add = [&](const char* what, const std::vector<std::string>& items) {
    if (!items.empty()) parts.push_back(fmt::format("{}: {}", what, fmt::join(items, ", ")));
  };
  add("missing keys", missing);
  add("unexpected keys", unexpected);
  add("shape mismatch", shapes);
  add("dtype mismatch", dtypes);
  add("invalid step", invalid);
  if (!parts.empty()) fail(name_.c_str(), "optimizer state: {}", fmt::join(parts, "; "));

  for (std::size_t i = 0; i < params_.size(); ++i) {
    state_[i].step = steps[i];
    const core::Device device = params_[i].second.device();  // state lives with its parameter
    for (std::size_t s = 0; s < slot_names_.size(); ++s) {
      Tensor& slot = state_[i].slots[s];
      slot = core::to_device(slot, device);
      core::copy_(slot, core::to_device(in.at(params_[i].first + "/" + slot_names_[s]), device));
    }
  }
  step_count_ = step_count;
}

// ---- make_optimizer ----------------------------------------------------------------------------

namespace {

struct HyperReader {
  const Hyperparameters& hp;
  std::unordered_set<std::string> known;

  double number(const std::string& name, double fallback) {
    known.insert(name);
    const HyperValue* v = hp.find(name);
    if (!v) return fallback;
    MOEGRAD_CHECK(std::holds_alternative<double>(*v), "make_optimizer", "{}: '{}' must be a number, got a flag",
                  hp.optimizer, name);
    return std::get<double>(*v);
  }
  bool flag(const std::string& name, bool fallback) {
    known.insert(name);
    const HyperValue* v = hp.find(name);
    if (!v) return fallback;
    MOEGRAD_CHECK(std::holds_alternative<bool>(*v), "make_optimizer", "{}: '{}' must be a flag, got a number",
                  hp.optimizer, name);
    return std::get<bool>(*v);
  }
  void finish() const {
    std::vector<std::string> unknown;
    for (const auto& [k, v] : hp.values)
      if (!known.count(k)) unknown.push_back(k);
    MOEGRAD_CHECK(unknown.empty(), "make_optimizer", "{}: unknown hyperparameters: {}", hp.optimizer,
                  fmt::join(unknown, ", "));
  }
};

template <class Options> Options adam_options(HyperReader& r, Options o) {
  o.lr = r.number("lr", o.lr);
  o.betas.first = r.number("beta1", o.betas.first);
  o.betas.second = r.number("beta2", o.betas.second);
  o.eps = r.number("eps", o.eps);
  o.weight_decay = r.number("weight_decay", o.weight_decay);
  o.amsgrad = r.flag("amsgrad", o.amsgrad);
  o.maximize = r.flag("maximize", o.maximize);
  r.finish();
  return o;
}

}  // namespace

std::unique_ptr<Optimizer> make_optimizer(NamedParameters params, const Hyperparameters& hp) {
  HyperReader r{hp, {}};
  if (hp.optimizer == "SGD") {
    SGDOptions o;
    MOEGRAD_CHECK(hp.find("lr"), "make_optimizer", "SGD: 'lr' is required");
    o.lr = r.number("lr", o.lr);
    o.momentum = r.number("momentum", o.momentum);
    o.dampening = r.number("dampening", o.dampening);
    o.weight_decay = r.number("weight_decay", o.weight_decay);
    o.nesterov = r.flag("nesterov", o.nesterov);
    o.maximize = r.flag("maximize", o.maximize);
    r.finish();
    return std::make_unique<SGD>(std::move(params), o);
  }
  if (hp.optimizer == "Adam") return std::make_unique<Adam>(std::move(params), adam_options(r, AdamOptions{}));
  if (hp.optimizer == "AdamW") return std::make_unique<AdamW>(std::move(params), adam_options(r, AdamWOptions{}));
  fail("make_optimizer", "unknown optimizer '{}' (SGD, Adam, AdamW)", hp.optimizer);
}

}  // namespace moegrad::optim
