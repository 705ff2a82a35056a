// Parameter initialisation, drawn from core's Philox generator (nullptr: the default one).
// In place on a tensor; the caller holds no graph over it (modules call these at construction
// or under NoGradGuard).
#pragma once
#include <cstdint>

#include "core/ops.h"

namespace moegrad::nn::init {

void uniform_(const core::Tensor& t, double lo, double hi, core::Generator* gen = nullptr);  // U[lo, hi)
void normal_(const core::Tensor& t, core::Generator* gen = nullptr);                        // N(0, 1)

// PyTorch's kaiming_uniform_ bound for leaky_relu slope a: sqrt(3) * sqrt(2 / (1 + a^2)) / sqrt(fan_in).
// nn.Linear uses a = sqrt(5), which gives 1/sqrt(fan_in) (up to rounding, computed as torch does).
double kaiming_uniform_bound(std::int64_t fan_in, double a);

}  // namespace moegrad::nn::init
