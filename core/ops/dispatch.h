// Argument checks shared by every op entry point (core/ops/*.cpp).
#pragma once
#include <initializer_list>

#include "core/tensor.h"

namespace moegrad::core {

// All tensors defined and on one device; returns that device.
// Throws "[op] tensors on different devices: cpu vs cuda:0".
Device common_device(const char* op, std::initializer_list<const Tensor*> tensors);
// All tensors share a dtype; returns it. Throws "[op] dtype mismatch: f32(2, 3) vs f64(3)".
DType common_dtype(const char* op, std::initializer_list<const Tensor*> tensors);
void check_defined(const char* op, const Tensor& t, const char* what = "input");

}  // namespace moegrad::core
