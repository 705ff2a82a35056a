#include "autograd/registry.h"

namespace moegrad::ag {
namespace {
std::set<std::string>& ops() {
  static std::set<std::string> names;
  return names;
}
}  // namespace

const std::set<std::string>& differentiable_ops() { return ops(); }

OpRegistration::OpRegistration(std::initializer_list<const char*> names) {
  for (const char* n : names) ops().insert(n);
}

}  // namespace moegrad::ag
