// The per-element math of the random ops, shared by the CPU loops (core/rng.cpp) and the CUDA
// kernels (core/cuda/rng.cu), so one (seed, offset) gives the same numbers on both devices.
// The mapping from Philox blocks to elements is documented in core/kernels/philox.h.
#pragma once
#include <cmath>
#include <cstdint>
#include <type_traits>

#include "core/kernels/philox.h"
#include "core/kernels/scalar_math_base.h"

namespace moegrad::core::math {

// Philox values per block for a uniform-based draw: 4 f32 or 2 f64.
template <class T> constexpr std::int64_t uniforms_per_block = std::is_same_v<T, float> ? 4 : 2;

// Element j of a block as a uniform in [0, 1).
template <class T> MOEGRAD_HD T block_uniform(const PhiloxBlock& b, int j) {
  if constexpr (std::is_same_v<T, float>) return philox_uniform_f32(b.v[j]);
  else return philox_uniform_f64(b.v[2 * j], b.v[2 * j + 1]);
}

// N(0, 1) from one whole block: Box-Muller, cos branch (core/kernels/philox.h).
template <class T> MOEGRAD_HD T block_normal(const PhiloxBlock& b) {
  constexpr T two_pi = T(6.283185307179586476925286766559);
  T u1, u2;
  if constexpr (std::is_same_v<T, float>) {
    u1 = 1.0f - philox_uniform_f32(b.v[0]);
    u2 = philox_uniform_f32(b.v[1]);
  } else {
    u1 = 1.0 - philox_uniform_f64(b.v[0], b.v[1]);
    u2 = philox_uniform_f64(b.v[2], b.v[3]);
  }
  return std::sqrt(T(-2) * std::log(u1)) * std::cos(two_pi * u2);
}

// Transforms of U in [0, 1).
struct UniformUnit { template <class T> MOEGRAD_HD T operator()(T u) const { return u; } };
template <class T> struct UniformRange {  // lo + (hi - lo) * U, kept below hi
  T lo, width, hi, below;  // below: the largest value < hi (rounding guard)
  MOEGRAD_HD T operator()(T u) const {
    const T v = lo + width * u;
    return v < hi ? v : below;
  }
};
struct GumbelFromUniform {  // -log(max(-log(max(U, 1e-20)), 1e-20))
  template <class T> MOEGRAD_HD T operator()(T u) const {
    const T tiny = static_cast<T>(1e-20);
    const T a = u > tiny ? u : tiny;
    const T b = -std::log(a);
    return -std::log(b > tiny ? b : tiny);
  }
};

}  // namespace moegrad::core::math
