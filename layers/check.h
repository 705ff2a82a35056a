// Input checks shared by the blocks; messages name the module and describe the tensors:
//   [Linear] input last dim 5 != in_features 4: f32(2, 5)
#pragma once
#include <cstdint>

#include "autograd/variable.h"

namespace moegrad::nn {

// x is defined, has at least min_dim dims, and has like's dtype and device.
void check_input(const char* module, const ag::Variable& x, const core::Tensor& like, std::int64_t min_dim = 1);
// x's last dim equals expected (what names it: "in_features", "dim").
void check_last_dim(const char* module, const ag::Variable& x, std::int64_t expected, const char* what);

}  // namespace moegrad::nn
