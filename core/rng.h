// Counter-based random numbers (Philox4x32-10). State = (seed, offset), two integers a
// checkpoint stores; the same state gives the same numbers on every device.
#pragma once
#include <cstdint>

#include "core/ops/creation.h"
#include "core/tensor.h"

namespace moegrad::core {

class Generator {
 public:
  explicit Generator(std::uint64_t seed = 0) : seed_(seed) {}
  std::uint64_t seed() const { return seed_; }
  std::uint64_t offset() const { return offset_; }
  void set_state(std::uint64_t seed, std::uint64_t offset) { seed_ = seed; offset_ = offset; }
  void manual_seed(std::uint64_t seed) { set_state(seed, 0); }
  // Reserves `blocks` Philox blocks (4 x u32 each) and returns the first block's counter.
  std::uint64_t advance(std::uint64_t blocks) {
    std::uint64_t start = offset_;
    offset_ += blocks;
    return start;
  }

 private:
  std::uint64_t seed_ = 0;
  std::uint64_t offset_ = 0;
};

Generator& default_generator();
void manual_seed(std::uint64_t seed);  // seeds the default generator

// Floating dtypes only. gen == nullptr uses the default generator.
Tensor rand(const Shape& shape, TensorOptions opt = {}, Generator* gen = nullptr);        // U[0,1)
Tensor uniform(const Shape& shape, double lo, double hi, TensorOptions opt = {},
               Generator* gen = nullptr);                                                 // U[lo,hi)
Tensor randn(const Shape& shape, TensorOptions opt = {}, Generator* gen = nullptr);       // N(0,1)
// Gumbel(0,1) as the MoE gates draw it: -log(max(-log(max(U, 1e-20)), 1e-20)).
Tensor gumbel(const Shape& shape, TensorOptions opt = {}, Generator* gen = nullptr);

}  // namespace moegrad::core
