// The catalogue of differentiable ops: each file in autograd/functions/ registers the public
// functions it defines, and the gradient-check suite fails for any name without a check.
#pragma once
#include <initializer_list>
#include <set>
#include <string>

namespace moegrad::ag {

const std::set<std::string>& differentiable_ops();

struct OpRegistration {
  OpRegistration(std::initializer_list<const char*> names);
};

}  // namespace moegrad::ag

#define MOEGRAD_CONCAT_INNER(a, b) a##b
#define MOEGRAD_CONCAT(a, b) MOEGRAD_CONCAT_INNER(a, b)
// MOEGRAD_DIFFERENTIABLE("add", "sub") at namespace scope in the file that defines them.
#define MOEGRAD_DIFFERENTIABLE(...)                                                \
  static const ::moegrad::ag::OpRegistration MOEGRAD_CONCAT(moegrad_ops_, __LINE__) { \
    __VA_ARGS__                                                                     \
  }
