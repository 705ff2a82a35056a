// Indexing, selection and joining. Index tensors are i64.
#pragma once
#include <vector>

#include "core/ops/reduce.h"
#include "core/tensor.h"

namespace moegrad::core {

// Largest (or smallest) k along dim, sorted; ties broken by the lowest index.
ValuesIndices topk(const Tensor& x, std::int64_t k, std::int64_t dim = -1, bool largest = true);
// i64 indices -> [..., num_classes] in dtype (i64 by default).
Tensor one_hot(const Tensor& indices, std::int64_t num_classes, DType dtype = DType::i64);

// out[i][j] = x[i][index[i][j]] (dim = 1), PyTorch semantics.
Tensor gather(const Tensor& x, std::int64_t dim, const Tensor& index);
// Copy of x with x[...index...] = src (scatter) or += src (scatter_add).
Tensor scatter(const Tensor& x, std::int64_t dim, const Tensor& index, const Tensor& src);
Tensor scatter_add(const Tensor& x, std::int64_t dim, const Tensor& index, const Tensor& src);
// Rows (along dim) picked by a 1-D index.
Tensor index_select(const Tensor& x, std::int64_t dim, const Tensor& index);
// Copy of x with x.index_select(dim, index) += src, accumulating repeated indices.
Tensor index_add(const Tensor& x, std::int64_t dim, const Tensor& index, const Tensor& src);

Tensor cat(const std::vector<Tensor>& tensors, std::int64_t dim);
Tensor stack(const std::vector<Tensor>& tensors, std::int64_t dim);
// Views of x: chunks of ceil(size/chunks); split by one size or by explicit sizes.
std::vector<Tensor> chunk(const Tensor& x, std::int64_t chunks, std::int64_t dim);
std::vector<Tensor> split(const Tensor& x, std::int64_t split_size, std::int64_t dim);
std::vector<Tensor> split(const Tensor& x, const std::vector<std::int64_t>& sizes, std::int64_t dim);
// Constant padding, PyTorch order: {last_lo, last_hi, second_last_lo, second_last_hi, ...}.
// Negative amounts crop.
Tensor pad(const Tensor& x, const std::vector<std::int64_t>& pads, double value = 0.0);

}  // namespace moegrad::core
