// How the reduction kernels (core/cpu/reduce.cpp, core/cuda/reduce.cu) see their input: as
// dense x[A, R, B], reducing over R. Host code, shared by both backends; the ops layer makes the
// plan (plan_reduction in core/ops/reduce.cpp, which copies x when no dim order is dense).
#pragma once
#include <cstdint>
#include <vector>

#include "core/tensor.h"

namespace moegrad::core {

// Dense [A, R, B] view of a reduction's input: `data` is x itself when some order of its dims
// is dense, else a contiguous copy with the reduced dims last.
struct ReducePlan {
  Tensor data;
  std::int64_t A = 1, R = 1, B = 1;
};

// True when x's elements, walked with dims in `order` (last fastest), are stride-1 dense.
inline bool dense_in_order(const Tensor& x, const std::vector<std::int64_t>& order) {
  std::int64_t expected = 1;
  for (auto it = order.rbegin(); it != order.rend(); ++it) {
    const std::int64_t n = x.shape()[*it];
    if (n == 1) continue;
    if (x.strides()[*it] != expected) return false;
    expected *= n;
  }
  return true;
}

// A contiguous tensor seen as lines along `dim`: [A, R, B] with R = size(dim).
struct ReduceLines {
  std::int64_t A = 1, R = 1, B = 1;
};

inline ReduceLines reduce_lines(const Shape& shape, std::int64_t dim) {
  ReduceLines L;
  if (shape.empty()) return L;  // 0-d: one line of one element
  for (std::int64_t d = 0; d < dim; ++d) L.A *= shape[d];
  L.R = shape[dim];
  for (std::int64_t d = dim + 1; d < static_cast<std::int64_t>(shape.size()); ++d) L.B *= shape[d];
  return L;
}

}  // namespace moegrad::core
