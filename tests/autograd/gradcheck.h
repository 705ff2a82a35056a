// Float64 central-difference gradient checks. An entry builds inputs (several shapes, some
// broadcast, some stored non-contiguously) and checks d sum(w * f(inputs)) / d inputs, with
// fixed random weights w, against (L(x + eps) - L(x - eps)) / 2eps element by element.
#pragma once
#include <doctest/doctest.h>

#include <functional>
#include <string>
#include <vector>

#include "autograd/autograd.h"

namespace gradcheck {

using moegrad::ag::Variable;
using moegrad::core::Shape;
using moegrad::core::Tensor;

enum class Layout { contiguous, transposed, strided };  // how the leaf is laid out in memory
enum class Domain { any, positive, away_from_zero, distinct };  // values drawn for the leaf

struct Input {
  Shape shape;
  Layout layout = Layout::contiguous;
  Domain domain = Domain::any;
};

using Fn = std::function<Variable(const std::vector<Variable>&)>;

struct Options {
  double eps = 1e-6;
  double atol = 1e-6;
  double rtol = 1e-5;
};

// f64 leaf with requires_grad, values per domain, deterministic in seed.
Variable make_input(const Input& in, std::uint64_t seed);

// Runs the check and reports each mismatching element through doctest.
void check(const std::string& label, const Fn& f, const std::vector<Input>& inputs, Options opt = {});

// The catalogue: every GRADCHECK entry registers the op it covers.
bool register_entry(const char* op);
const std::vector<std::string>& entries();

// An i64 index tensor from values.
Tensor index(const std::vector<std::int64_t>& values, const Shape& shape);

}  // namespace gradcheck

#define GRADCHECK_CAT_(a, b) a##b
#define GRADCHECK_CAT(a, b) GRADCHECK_CAT_(a, b)
// GRADCHECK("op") { ... gradcheck::check(...) ... }  — one catalogue entry, one CTest test.
#define GRADCHECK(op)                                                                  \
  static const bool GRADCHECK_CAT(gradcheck_registered_, __LINE__) = gradcheck::register_entry(op); \
  TEST_CASE("gradcheck: " op)
