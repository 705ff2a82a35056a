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

// The grouped-GEMM operands for group offsets `off` ([E + 1], rows R = off.back()): x [R, a],
// w [E, a, b] (or [E, b, a] when transposed), gy [R, b].
struct GroupedOperands {
  std::int64_t E, R;
  core::Tensor offsets, x, w, gy;
};
inline GroupedOperands grouped_operands(const std::vector<std::int64_t>& off, core::DType dtype, bool transposed,
                                        std::int64_t a = 7, std::int64_t b = 5) {
  GroupedOperands g;
  g.E = static_cast<std::int64_t>(off.size()) - 1;
  g.R = off.back();
  g.offsets = ti(off, {g.E + 1});
  g.x = random_tensor({g.R, a}, dtype, 11);
  g.w = random_tensor(transposed ? core::Shape{g.E, b, a} : core::Shape{g.E, a, b}, dtype, 12);
  g.gy = random_tensor({g.R, b}, dtype, 13);
  return g;
}

}  // namespace moegrad::test
