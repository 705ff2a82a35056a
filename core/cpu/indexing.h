// CPU kernels for core/ops/indexing.h. Arguments are validated by the ops layer (shapes, dtypes,
// devices); the kernels check index values (which needs the data) and throw "[op] index ..".
// Outputs are allocated by the caller; inputs may be strided (transposed, sliced, expanded).
#pragma once
#include <cstdint>

#include "core/tensor.h"

namespace moegrad::core::cpu {

// values/indices have x's shape with size(dim) = k; values in x's dtype, indices i64.
void topk(const Tensor& x, std::int64_t k, std::int64_t dim, bool largest, const Tensor& values,
          const Tensor& indices);
// out: zero-filled, shape indices.shape + [num_classes]; sets out[..., indices[...]] = 1.
void one_hot(const Tensor& indices, const Tensor& out);
// out has index's shape and x's dtype.
void gather(const Tensor& x, std::int64_t dim, const Tensor& index, const Tensor& out);
// In place on out (already a copy of x): out[..index..] = src / += src, in index order.
void scatter(const Tensor& out, std::int64_t dim, const Tensor& index, const Tensor& src);
void scatter_add(const Tensor& out, std::int64_t dim, const Tensor& index, const Tensor& src);
// index is 1-D; out has x's shape with size(dim) = index.numel().
void index_select(const Tensor& x, std::int64_t dim, const Tensor& index, const Tensor& out);
// In place on out (already a copy of x): out.select(dim, index[j]) += src.select(dim, j).
void index_add(const Tensor& out, std::int64_t dim, const Tensor& index, const Tensor& src);

}  // namespace moegrad::core::cpu
