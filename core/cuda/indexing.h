// CUDA kernels for core/ops/indexing.h: the contracts and results of core/cpu/indexing.h
// (topk order and ties, scatter's last write in index order, scatter_add/index_add summing in
// index order: deterministic, no atomics). Arguments are validated by the ops layer (shapes,
// dtypes, devices). Index values are checked on the device: a bad one is recorded
// (core/cuda/device_error.h) and raised as "[op] index ..." at the next synchronisation, and the
// entry is skipped. Outputs are allocated by the caller; inputs may be strided. Kernels run on
// the device's stream (cuda::stream) and never synchronise.
#pragma once
#include <cstdint>

#include "core/tensor.h"

namespace moegrad::core::cuda {

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

}  // namespace moegrad::core::cuda
