// Views: share storage with their input, copy nothing (reshape copies only when it must).
#pragma once
#include "core/tensor.h"

namespace moegrad::core {

// One dim may be -1 (inferred). View fails for non-viewable strides; reshape copies then.
Tensor view(const Tensor& t, const Shape& shape);
Tensor reshape(const Tensor& t, const Shape& shape);
Tensor flatten(const Tensor& t, std::int64_t start_dim = 0, std::int64_t end_dim = -1);
Tensor permute(const Tensor& t, const std::vector<std::int64_t>& dims);
Tensor transpose(const Tensor& t, std::int64_t dim0, std::int64_t dim1);
Tensor narrow(const Tensor& t, std::int64_t dim, std::int64_t start, std::int64_t length);
// Python-like t[start:end:step] on one dim; negative start/end count from the end, clamped.
Tensor slice(const Tensor& t, std::int64_t dim, std::int64_t start, std::int64_t end,
             std::int64_t step = 1);
Tensor select(const Tensor& t, std::int64_t dim, std::int64_t index);  // drops dim
// Broadcast to shape (size-1 dims get stride 0; -1 keeps the size).
Tensor expand(const Tensor& t, const Shape& shape);
Tensor squeeze(const Tensor& t, std::int64_t dim);  // no-op if that dim is not 1
Tensor squeeze(const Tensor& t);                    // all size-1 dims
Tensor unsqueeze(const Tensor& t, std::int64_t dim);
Tensor as_strided(const Tensor& t, const Shape& shape, const Shape& strides, std::int64_t offset);

}  // namespace moegrad::core
