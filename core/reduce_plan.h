// How the reduction kernels (core/cpu/reduce.cpp, core/cuda/reduce.cu) see their input: as
// dense x[A, R, B], reducing over R. Host code, shared by both backends.
#pragma once
#include <cstdint>
#include <vector>

#include "core/ops/creation.h"
#include "core/ops/views.h"
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

// dims: normalised, sorted, unique (the reduced ones). The output holds the kept dims in x's
// order, element (a, b) at a * B + b.
inline ReducePlan plan_reduction(const Tensor& x, const std::vector<std::int64_t>& dims) {
  const std::int64_t nd = x.dim();
  std::vector<bool> reduced(static_cast<std::size_t>(nd), false);
  for (std::int64_t d : dims) reduced[d] = true;
  std::vector<std::int64_t> kept_dims, red_dims;
  std::int64_t K = 1, R = 1;
  for (std::int64_t d = 0; d < nd; ++d) {
    if (reduced[d]) {
      red_dims.push_back(d);
      R *= x.shape()[d];
    } else {
      kept_dims.push_back(d);
      K *= x.shape()[d];
    }
  }
  std::vector<std::int64_t> rows_order = kept_dims;
  rows_order.insert(rows_order.end(), red_dims.begin(), red_dims.end());
  if (dense_in_order(x, rows_order)) return {x, K, R, 1};

  std::vector<std::int64_t> cols_order = red_dims;
  cols_order.insert(cols_order.end(), kept_dims.begin(), kept_dims.end());
  if (dense_in_order(x, cols_order)) return {x, 1, R, K};

  // Reduced dims form one consecutive block of a dense tensor: [before, block, after].
  const bool block = !dims.empty() &&
                     dims.back() - dims.front() + 1 == static_cast<std::int64_t>(dims.size());
  std::vector<std::int64_t> natural(static_cast<std::size_t>(nd));
  for (std::int64_t d = 0; d < nd; ++d) natural[d] = d;
  if (block && dense_in_order(x, natural)) {
    std::int64_t A = 1, B = 1;
    for (std::int64_t d = 0; d < dims.front(); ++d) A *= x.shape()[d];
    for (std::int64_t d = dims.back() + 1; d < nd; ++d) B *= x.shape()[d];
    return {x, A, R, B};
  }

  return {contiguous(permute(x, rows_order)), K, R, 1};
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
