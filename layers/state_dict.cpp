#include "layers/state_dict.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "core/ops.h"

namespace moegrad::nn {

void StateDict::insert(std::string key, Tensor value) {
  MOEGRAD_CHECK(!contains(key), "StateDict", "duplicate key '{}'", key);
  MOEGRAD_CHECK(value.defined(), "StateDict", "undefined tensor for key '{}'", key);
  index_.emplace(key, entries_.size());
  entries_.emplace_back(std::move(key), std::move(value));
}

void StateDict::set(const std::string& key, Tensor value) {
  auto it = index_.find(key);
  if (it == index_.end()) return insert(key, std::move(value));
  MOEGRAD_CHECK(value.defined(), "StateDict", "undefined tensor for key '{}'", key);
  entries_[it->second].second = std::move(value);
}

const Tensor* StateDict::find(const std::string& key) const {
  auto it = index_.find(key);
  return it == index_.end() ? nullptr : &entries_[it->second].second;
}

const Tensor& StateDict::at(const std::string& key) const {
  const Tensor* t = find(key);
  MOEGRAD_CHECK(t != nullptr, "StateDict", "no key '{}'", key);
  return *t;
}

std::vector<std::string> StateDict::keys() const {
  std::vector<std::string> out;
  out.reserve(entries_.size());
  for (const auto& e : entries_) out.push_back(e.first);
  return out;
}

StateDict clone(const StateDict& sd) {
  StateDict out;
  for (const auto& [key, value] : sd) out.insert(key, core::clone(value));
  return out;
}

void LoadReport::load(const StateDict& in, const std::string& key, const Tensor& dst) {
  used_.insert(key);
  const Tensor* src = in.find(key);
  if (src == nullptr) {
    missing_keys.push_back(key);
    return;
  }
  if (src->shape() != dst.shape()) {
    shape_mismatches.push_back(fmt::format("{} (checkpoint {} vs model {})", key, core::shape_str(src->shape()),
                                           core::shape_str(dst.shape())));
    return;
  }
  if (src->dtype() != dst.dtype()) {
    dtype_mismatches.push_back(
        fmt::format("{} (checkpoint {} vs model {})", key, core::dtype_name(src->dtype()), core::dtype_name(dst.dtype())));
    return;
  }
  copies_.emplace_back(dst, *src);
}

void LoadReport::apply() {
  for (const auto& [dst, src] : copies_) core::copy_(dst, core::to_device(src, dst.device()));
  copies_.clear();
}

bool LoadReport::ok(bool strict) const {
  if (!shape_mismatches.empty() || !dtype_mismatches.empty()) return false;
  return !strict || (missing_keys.empty() && unexpected_keys.empty());
}

std::string LoadReport::message(bool strict) const {
  std::vector<std::string> parts;
  auto add = [&](const char* what, const std::vector<std::string>& items) {
    if (!items.empty()) parts.push_back(fmt::format("{}: {}", what, fmt::join(items, ", ")));
  };
  if (strict) {
    add("missing keys", missing_keys);
    add("unexpected keys", unexpected_keys);
  }
  add("shape mismatch", shape_mismatches);
  add("dtype mismatch", dtype_mismatches);
  return fmt::format("[load_state_dict] {}", fmt::join(parts, "; "));
}

}  // namespace moegrad::nn
