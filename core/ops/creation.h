// Creating tensors and moving them between dtypes and devices (empty / empty_for: core/tensor.h).
#pragma once
#include <vector>

#include "core/tensor.h"

namespace moegrad::core {

Tensor zeros(const Shape& shape, TensorOptions opt = {});
Tensor ones(const Shape& shape, TensorOptions opt = {});
Tensor full(const Shape& shape, double value, TensorOptions opt = {});
Tensor empty_like(const Tensor& t);  // contiguous, same shape, dtype, device
Tensor zeros_like(const Tensor& t);
Tensor ones_like(const Tensor& t);
Tensor full_like(const Tensor& t, double value);
Tensor scalar_tensor(double value, TensorOptions opt = {});  // 0-d
// [start, end) by step; dtype i64 unless opt says otherwise.
Tensor arange(double start, double end, double step = 1.0, TensorOptions opt = {DType::i64});
Tensor arange(std::int64_t end, TensorOptions opt = {DType::i64});

// From host data (row-major); values.size() must equal the shape's numel.
template <class T> Tensor from_vector(const std::vector<T>& values, const Shape& shape,
                                      Device device = Device::cpu());
// Same dtype as T, 1-D.
template <class T> Tensor from_vector(const std::vector<T>& values) {
  return from_vector(values, Shape{static_cast<std::int64_t>(values.size())});
}

Tensor contiguous(const Tensor& t);       // t itself when already contiguous
Tensor clone(const Tensor& t);            // always a fresh contiguous copy
void copy_(const Tensor& dst, const Tensor& src);  // src broadcast to dst's shape, dtype converted
Tensor to_dtype(const Tensor& t, DType dtype);      // t itself when dtype matches
Tensor to_device(const Tensor& t, Device device);   // t itself when device matches
void fill_(const Tensor& t, double value);

}  // namespace moegrad::core
