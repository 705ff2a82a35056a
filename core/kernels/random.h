// Philox draws into a contiguous buffer, declared once for every backend per dtype T
// (core/cpu/random.cpp, core/cuda/rng.cu; reached through backend<RandomKernels<T>>,
// core/backend.h). Element for element the same values on every device: element i is a
// pure function of (seed, block, lane) (core/kernels/philox.h, core/kernels/rng_math.h), so
// results depend on neither the thread count nor the device. `first` is the first Philox block;
// out holds n elements on `device`.
#pragma once
#include <cstdint>

#include "core/kernels/rng_math.h"

namespace moegrad::core {

template <class T>
struct RandomKernels {
  // out[i] = f(U_i): U_i from lane i % per of block first + i / per (per = 4 for f32, 2 for f64).
  void (*uniform_unit)(T* out, std::int64_t n, std::uint64_t seed, std::uint64_t first, math::UniformUnit f,
                       int device);
  void (*uniform_range)(T* out, std::int64_t n, std::uint64_t seed, std::uint64_t first,
                        math::UniformRange<T> f, int device);
  void (*gumbel)(T* out, std::int64_t n, std::uint64_t seed, std::uint64_t first, math::GumbelFromUniform f,
                 int device);
  // out[i] = N(0, 1) from block first + i.
  void (*normal)(T* out, std::int64_t n, std::uint64_t seed, std::uint64_t first, int device);

  static const RandomKernels cpu;   // core/cpu/random.cpp (f32, f64)
  static const RandomKernels cuda;  // core/cuda/rng.cu (f32, f64; CUDA builds only)
};

}  // namespace moegrad::core
