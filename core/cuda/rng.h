// Philox draws on the GPU, element for element the CPU's (core/rng.cpp, core/kernels/rng_math.h).
// out is a contiguous device buffer of n elements; `first` is the first Philox block.
#pragma once
#include <cstdint>

namespace moegrad::core::cuda {

// out[i] = f(U_i): U_i from lane i % per of block first + i / per (per = 4 for f32, 2 for f64).
template <class T, class F>
void fill_uniform(T* out, std::int64_t n, std::uint64_t seed, std::uint64_t first, F f, int device);
// out[i] = N(0, 1) from block first + i.
template <class T>
void fill_normal(T* out, std::int64_t n, std::uint64_t seed, std::uint64_t first, int device);

}  // namespace moegrad::core::cuda
