// Seeded random tensors for tests: the same values for the same seed on every rank and run.
#pragma once
#include <cstdint>

#include "core/ops.h"
#include "core/rng.h"

namespace moegrad::testing {

inline core::Tensor randn(const core::Shape& shape, std::uint64_t seed) {
  core::Generator g(seed);
  return core::randn(shape, {}, &g);
}
inline core::Tensor rand(const core::Shape& shape, std::uint64_t seed) {
  core::Generator g(seed);
  return core::rand(shape, {}, &g);
}

}  // namespace moegrad::testing
