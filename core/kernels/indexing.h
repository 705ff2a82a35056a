// The indexing kernels, declared once for every backend (core/cpu/indexing.cpp,
// core/cuda/indexing.cu; reached through backend<IndexingKernels>, core/backend.h).
// Arguments are validated by the ops layer (core/ops/indexing.cpp: shapes, dtypes, devices);
// outputs are allocated by the caller; inputs may be strided (transposed, sliced, expanded).
// Index values are checked by the kernels (it needs the data): the CPU throws "[op] index ..",
// CUDA records it in the device's error slot (core/cuda/device_error.h), skips the entry and
// raises it at the next synchronisation. The same results on every device: topk's order and
// ties, scatter's last write in index order, scatter_add/index_add summing in index order
// (deterministic, no atomics).
#pragma once
#include <cstdint>

#include "core/tensor.h"

namespace moegrad::core {

struct IndexingKernels {
  // values/indices have x's shape with size(dim) = k; values in x's dtype, indices i64.
  void (*topk)(const Tensor& x, std::int64_t k, std::int64_t dim, bool largest, const Tensor& values,
               const Tensor& indices);
  // out: zero-filled, shape indices.shape + [num_classes]; sets out[..., indices[...]] = 1.
  void (*one_hot)(const Tensor& indices, const Tensor& out);
  // out has index's shape and x's dtype.
  void (*gather)(const Tensor& x, std::int64_t dim, const Tensor& index, const Tensor& out);
  // In place on out (already a copy of x): out[..index..] = src / += src, in index order.
  void (*scatter)(const Tensor& out, std::int64_t dim, const Tensor& index, const Tensor& src);
  void (*scatter_add)(const Tensor& out, std::int64_t dim, const Tensor& index, const Tensor& src);
  // index is 1-D; out has x's shape with size(dim) = index.numel().
  void (*index_select)(const Tensor& x, std::int64_t dim, const Tensor& index, const Tensor& out);
  // In place on out (already a copy of x): out.select(dim, index[j]) += src.select(dim, j).
  void (*index_add)(const Tensor& out, std::int64_t dim, const Tensor& index, const Tensor& src);

  static const IndexingKernels cpu;   // core/cpu/indexing.cpp
  static const IndexingKernels cuda;  // core/cuda/indexing.cu (CUDA builds only)
};

}  // namespace moegrad::core
