// Inputs shared by the MoE row-op tests on the CPU (test_moe_rows.cpp) and on CUDA
// (test_moe_rows_cuda.cpp): the same seeds give the same tensors in both.
#pragma once
#include <algorithm>
#include <cstdint>
#include <random>
#include <vector>

#include "core/ops.h"

namespace moegrad::test {

inline core::Tensor ti(const std::vector<std::int64_t>& v, const core::Shape& s) {
  return core::from_vector<std::int64_t>(v, s);
}

// Uniform in [-1, 1), drawn in double and cast to dtype.
inline core::Tensor random_tensor(const core::Shape& shape, core::DType dtype, unsigned seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<double> dist(-1.0, 1.0);
  std::vector<double> v(static_cast<std::size_t>(core::shape_numel(shape)));
  for (auto& x : v) x = dist(rng);
  return core::to_dtype(core::from_vector(v, shape), dtype);
}

// row [T, k]: distinct targets in [0, R) (a shuffled prefix of 0..R-1), about 1 in 5 set to -1.
// With distinct = false, targets are drawn with repetition.
inline core::Tensor random_rows(std::int64_t T, std::int64_t k, std::int64_t R, bool distinct, unsigned seed) {
  std::mt19937 rng(seed);
  std::vector<std::int64_t> slots(static_cast<std::size_t>(R));
  for (std::int64_t r = 0; r < R; ++r) slots[r] = r;
  std::shuffle(slots.begin(), slots.end(), rng);
  std::vector<std::int64_t> v(static_cast<std::size_t>(T * k));
  for (std::int64_t i = 0; i < T * k; ++i) {
    const bool dropped = rng() % 5 == 0;
    v[i] = dropped ? -1 : (distinct ? slots[i] : static_cast<std::int64_t>(rng() % R));
  }
  return ti(v, {T, k});
}

}  // namespace moegrad::test
