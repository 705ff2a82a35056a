#include "layers/sequential.h"

#include <string>

namespace moegrad::nn {

Sequential::Sequential(std::initializer_list<std::shared_ptr<UnaryModule>> modules) {
  for (const auto& m : modules) append(m);
}

Sequential::Sequential(const std::vector<std::shared_ptr<UnaryModule>>& modules) {
  for (const auto& m : modules) append(m);
}

void Sequential::append(std::shared_ptr<UnaryModule> module) {
  MOEGRAD_CHECK(module != nullptr, "Sequential", "module {} is null", modules_.size());
  register_module(std::to_string(modules_.size()), module);
  modules_.push_back(std::move(module));
}

const std::shared_ptr<UnaryModule>& Sequential::operator[](std::size_t i) const {
  MOEGRAD_CHECK(i < modules_.size(), "Sequential", "index {} out of range for {} modules", i, modules_.size());
  return modules_[i];
}

Variable Sequential::forward(const Variable& x) {
  Variable y = x;
  for (const auto& m : modules_) y = m->forward(y);
  return y;
}

}  // namespace moegrad::nn
