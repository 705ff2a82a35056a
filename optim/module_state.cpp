// The optimizer's state between its own form (by parameter name) and the module's state_dict
// keys, through Module::state_entries.
#include "optim/module_state.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <map>
#include <unordered_set>

#include "core/ops.h"

namespace moegrad::optim {

using core::Tensor;

namespace {

constexpr const char* kStepCount = "step_count";
constexpr std::int64_t kF32Exact = std::int64_t{1} << 24;  // f32 holds every integer up to here

// A parameter's update count as PyTorch 1.13 keeps Adam's: a 0-d f32 (f64 past 2^24).
Tensor keyed_step(std::int64_t step) {
  return core::scalar_tensor(static_cast<double>(step), {step <= kF32Exact ? core::DType::f32 : core::DType::f64});
}

// The parameters whose state a module's keys carry: named_parameters' names (a tied parameter's
// first name only).
std::unordered_set<std::string> parameter_names(const nn::Module& module) {
  std::unordered_set<std::string> out;
  for (const auto& [name, v] : module.named_parameters()) out.insert(name);
  return out;
}

}  // namespace

nn::StateDict to_module_keys(const nn::StateDict& internal, const nn::Module& module, const std::string& op) {
  // "<name>/<slot>" -> by parameter, slots in the state's order ("step" first).
  std::map<std::string, std::vector<std::pair<std::string, Tensor>>> by_param;
  const Tensor* step_count = nullptr;
  for (const auto& [key, t] : internal) {
    const auto slash = key.find('/');
    if (slash == std::string::npos) {
      MOEGRAD_CHECK(key == kStepCount, op.c_str(), "optimizer state key '{}' is not '<parameter>/<slot>'", key);
      step_count = &t;
      continue;
    }
    by_param[key.substr(0, slash)].emplace_back(key.substr(slash + 1), t);
  }
  const std::unordered_set<std::string> names = parameter_names(module);
  std::unordered_set<std::string> done;
  nn::StateDict out;
  for (const nn::StateEntry& e : module.state_entries()) {
    if (!e.is_parameter() || !names.count(e.name)) continue;
    const auto it = by_param.find(e.name);
    if (it == by_param.end()) continue;
    done.insert(e.name);
    for (const auto& [slot, t] : it->second) {
      if (slot == "step") {
        const std::int64_t step = step_value(t);
        MOEGRAD_CHECK(step >= 0, op.c_str(), "optimizer state '{}/step' is not a step count: {}", e.name, core::describe(t));
        out.insert(e.key + "/step", keyed_step(step));
        continue;
      }
      MOEGRAD_CHECK(t.shape() == e.source().shape(), op.c_str(), "optimizer state '{}/{}' is {}, its parameter {}", e.name,
                    slot, core::describe(t), core::describe(e.source()));
      out.insert(e.key + "/" + slot, e.view(t));
    }
  }
  std::vector<std::string> stray;
  for (const auto& [name, slots] : by_param)
    if (!done.count(name)) stray.push_back(name);
  MOEGRAD_CHECK(stray.empty(), op.c_str(), "optimizer state for parameters the module does not have: {}", fmt::join(stray, ", "));
  if (step_count) out.insert(kStepCount, *step_count);
  return out;
}

nn::StateDict from_module_keys(const nn::StateDict& keyed, const nn::Module& module, const std::vector<std::string>& names,
                               const std::vector<std::string>& slots, const std::string& op) {
  struct Param {
    std::vector<Tensor> slots;  // the parameter's shape, filled through the keys' views
    std::int64_t step = -1;
    std::string step_key;       // the key step was first read from
  };
  const std::unordered_set<std::string> wanted(names.begin(), names.end()), first_names = parameter_names(module);
  std::map<std::string, Param> found;
  nn::LoadReport report;
  std::vector<std::string> invalid, differ;
  auto read_step = [&](const std::string& key, std::int64_t& value) {
    report.consume(key);
    const Tensor* t = keyed.find(key);
    if (!t) return report.missing_keys.push_back(key), false;
    value = t->defined() ? step_value(*t) : -1;
    if (value < 0) invalid.push_back(t->defined() ? fmt::format("{} ({})", key, core::describe(*t)) : key + " (undefined)");
    return value >= 0;
  };
  for (const nn::StateEntry& e : module.state_entries()) {
    if (!e.is_parameter() || !first_names.count(e.name) || !wanted.count(e.name)) continue;
    auto [it, fresh] = found.try_emplace(e.name);
    Param& p = it->second;
    if (fresh)
      for (std::size_t s = 0; s < slots.size(); ++s)
        p.slots.push_back(core::zeros(e.source().shape(), {e.source().dtype(), core::Device::cpu()}));
    for (std::size_t s = 0; s < slots.size(); ++s) report.load(keyed, e.key + "/" + slots[s], e.view(p.slots[s]));
    // Every key of one parameter (each expert's slice of a stacked weight) must give one count.
    std::int64_t step = -1;
    const std::string key = e.key + "/step";
    if (!read_step(key, step)) continue;
    if (p.step < 0) {
      p.step = step;
      p.step_key = key;
    } else if (step != p.step) {
      differ.push_back(fmt::format("{} = {} vs {} = {}", key, step, p.step_key, p.step));
    }
  }
  std::int64_t step_count = 0;
  read_step(kStepCount, step_count);
  for (const auto& [key, t] : keyed)
    if (!report.consumed(key)) report.unexpected_keys.push_back(key);
  std::vector<std::string> absent;
  for (const std::string& name : names)
    if (!found.count(name)) absent.push_back(name);
  MOEGRAD_CHECK(absent.empty(), op.c_str(), "parameters the module does not have: {}", fmt::join(absent, ", "));

  std::vector<std::string> parts;
  auto add = [&](const char* what, const std::vector<std::string>& items) {
    if (!items.empty()) parts.push_back(fmt::format("{}: {}", what, fmt::join(items, ", ")));
  };
  add("missing keys", report.missing_keys);
  add("unexpected keys", report.unexpected_keys);
  add("shape mismatch", report.shape_mismatches);
  add("dtype mismatch", report.dtype_mismatches);
  add("invalid step", invalid);
  add("steps differ within one parameter", differ);
  if (!parts.empty()) fail(op.c_str(), "optimizer state: {}", fmt::join(parts, "; "));
  report.apply();

  nn::StateDict out;
  for (const std::string& name : names) {
    const Param& p = found.at(name);
    out.insert(name + "/step", core::from_vector<std::int64_t>({p.step}, core::Shape{}));
    for (std::size_t s = 0; s < slots.size(); ++s) out.insert(name + "/" + slots[s], p.slots[s]);
  }
  out.insert(kStepCount, core::from_vector<std::int64_t>({step_count}, core::Shape{}));
  return out;
}

nn::StateDict module_state_dict(const Optimizer& opt, const nn::Module& module) {
  return to_module_keys(opt.state_dict(), module, opt.name());
}

void load_module_state_dict(Optimizer& opt, const nn::Module& module, const nn::StateDict& state) {
  std::vector<std::string> names;
  for (const auto& [name, v] : opt.named_parameters()) names.push_back(name);
  opt.load_state_dict(from_module_keys(state, module, names, opt.slot_names(), opt.name()));
}

}  // namespace moegrad::optim
