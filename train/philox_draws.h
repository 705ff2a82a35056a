// Philox draws for the data sources (train/data.cpp, train/tensor_data.cpp): the lanes of the
// blocks with 128-bit counter (j, index), j = 0, 1, ..., under a 64-bit key, read one u32 at a
// time, and the transforms data.h documents (uniform, normal, integer below n).
#pragma once
#include <cmath>
#include <cstdint>
#include <numbers>

#include "core/kernels/philox.h"

namespace moegrad::train {

class Draws {
 public:
  Draws(std::uint64_t key, std::uint64_t index) : key_(key), index_(index) {}

  std::uint32_t u32() {
    if (lane_ == 4) {
      const core::PhiloxBlock c{{static_cast<std::uint32_t>(block_), static_cast<std::uint32_t>(block_ >> 32),
                                 static_cast<std::uint32_t>(index_), static_cast<std::uint32_t>(index_ >> 32)}};
      current_ = core::Philox4x32::apply(c, static_cast<std::uint32_t>(key_), static_cast<std::uint32_t>(key_ >> 32));
      ++block_;
      lane_ = 0;
    }
    return current_.v[lane_++];
  }
  double uniform() {  // [0, 1), 53 bits
    const std::uint64_t lo = u32();
    const std::uint64_t hi = u32();
    return static_cast<double>(((hi << 32) | lo) >> 11) * (1.0 / 9007199254740992.0);
  }
  double normal() {
    const double u1 = 1.0 - uniform();  // (0, 1]
    const double u2 = uniform();
    return std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * std::numbers::pi * u2);
  }
  std::uint64_t below(std::uint64_t n) {  // uniform in [0, n), n in [1, 2^32]
    const std::uint64_t range = std::uint64_t{1} << 32;
    const std::uint64_t limit = range - range % n;
    for (;;) {
      const std::uint64_t x = u32();
      if (x < limit) return x % n;
    }
  }

 private:
  std::uint64_t key_, index_;
  std::uint64_t block_ = 0;
  core::PhiloxBlock current_{};
  int lane_ = 4;
};

}  // namespace moegrad::train
