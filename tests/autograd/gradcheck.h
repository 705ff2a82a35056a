// Float64 central-difference gradient checks, and the CUDA-vs-CPU comparison of every entry. An entry builds inputs (several shapes, some
// broadcast, some stored non-contiguously) and checks d sum(w * f(inputs)) / d inputs, with
// fixed random weights w, against (L(x + eps) - L(x - eps)) / 2eps element by element.
#pragma once
#include <doctest/doctest.h>

#include <functional>
#include <string>
#include <vector>

#include "autograd/autograd.h"
#include "tests/cuda/cuda_test.h"

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

// What check() does: the float64 finite-difference check, or the same case on the CPU and on
// cuda:0 (f64 and f32) with outputs and gradients compared (CPU is the oracle).
enum class Mode { finite_difference, cuda_vs_cpu };
Mode& mode();
// A constant captured by an entry, moved to the device of `like` (and, if floating, to its dtype).
Tensor on(const Tensor& t, const Variable& like);

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
// GRADCHECK("op") { ... gradcheck::check(...) ... }  — one catalogue entry, two CTest tests:
// "gradcheck: op" (finite differences) and "cuda vs cpu: op" (skips itself without a GPU).
#define GRADCHECK_ENTRY(op, body)                                                                 \
  static void body();                                                                             \
  static const bool GRADCHECK_CAT(gradcheck_registered_, __LINE__) = gradcheck::register_entry(op); \
  TEST_CASE("gradcheck: " op) {                                                                   \
    gradcheck::mode() = gradcheck::Mode::finite_difference;                                       \
    body();                                                                                       \
  }                                                                                               \
  TEST_CASE("cuda vs cpu: " op) {                                                                 \
    SKIP_WITHOUT_CUDA();                                                                          \
    gradcheck::mode() = gradcheck::Mode::cuda_vs_cpu;                                             \
    body();                                                                                       \
    gradcheck::mode() = gradcheck::Mode::finite_difference;                                       \
  }                                                                                               \
  static void body()
#define GRADCHECK(op) GRADCHECK_ENTRY(op, GRADCHECK_CAT(gradcheck_body_, __LINE__))
