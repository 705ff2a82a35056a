// Sequential: runs its modules in order. Children are named "0", "1", ... so keys read
// "net.0.weight", like nn.Sequential.
#pragma once
#include <initializer_list>
#include <memory>
#include <vector>

#include "layers/module.h"

namespace moegrad::nn {

class Sequential : public UnaryModule {
 public:
  Sequential() = default;
  Sequential(std::initializer_list<std::shared_ptr<UnaryModule>> modules);
  explicit Sequential(const std::vector<std::shared_ptr<UnaryModule>>& modules);

  // Appends a module as child "<size()>"; returns it.
  template <class M> std::shared_ptr<M> push_back(std::shared_ptr<M> module) {
    append(module);
    return module;
  }
  Variable forward(const Variable& x) override;

  std::size_t size() const { return modules_.size(); }
  const std::shared_ptr<UnaryModule>& operator[](std::size_t i) const;
  std::string name() const override { return "Sequential"; }

 private:
  void append(std::shared_ptr<UnaryModule> module);
  std::vector<std::shared_ptr<UnaryModule>> modules_;
};

}  // namespace moegrad::nn
