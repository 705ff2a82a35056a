// Reductions over one or more dims (empty dims = all), with keepdim.
#pragma once
#include <vector>

#include "core/tensor.h"

namespace moegrad::core {

using Dims = std::vector<std::int64_t>;

// Whether every element of x is finite (undefined, empty and non-float tensors: true). On a
// CUDA device the answer is copied to the host (a synchronisation).
bool all_finite(const Tensor& x);
// Throws "[op] <what> contains NaN or Inf" unless every element of x is finite (non-float dtypes
// always are). On a CUDA device the check runs there and the error is raised at the next
// synchronisation point (a copy to the host, item(), core::synchronize), so a forward pass pays
// no copy to the host for it; op and what must therefore be string literals.
void assert_finite(const Tensor& x, const char* op, const char* what);

Tensor sum(const Tensor& x, const Dims& dims = {}, bool keepdim = false);
Tensor mean(const Tensor& x, const Dims& dims = {}, bool keepdim = false);
Tensor amax(const Tensor& x, const Dims& dims = {}, bool keepdim = false);
Tensor amin(const Tensor& x, const Dims& dims = {}, bool keepdim = false);
Tensor logsumexp(const Tensor& x, const Dims& dims, bool keepdim = false);
// p-norm over dims (p = 2 by default; p must be > 0).
Tensor norm(const Tensor& x, double p = 2.0, const Dims& dims = {}, bool keepdim = false);

// Over one dim: values and the index of the first max/min (i64).
struct ValuesIndices {
  Tensor values;
  Tensor indices;
};
ValuesIndices max(const Tensor& x, std::int64_t dim, bool keepdim = false);
ValuesIndices min(const Tensor& x, std::int64_t dim, bool keepdim = false);
Tensor argmax(const Tensor& x, std::int64_t dim, bool keepdim = false);
Tensor argmin(const Tensor& x, std::int64_t dim, bool keepdim = false);

Tensor softmax(const Tensor& x, std::int64_t dim);
Tensor log_softmax(const Tensor& x, std::int64_t dim);
// Backward helpers: given y = softmax(x) (or log_softmax), return dx.
Tensor softmax_backward(const Tensor& gy, const Tensor& y, std::int64_t dim);
Tensor log_softmax_backward(const Tensor& gy, const Tensor& y, std::int64_t dim);

// Inclusive (x0, x0+x1, ...) or exclusive (0, x0, x0+x1, ...) along dim;
// reverse = accumulate from the end (the adjoint of the forward form).
Tensor cumsum(const Tensor& x, std::int64_t dim, bool exclusive = false, bool reverse = false);

// Sum x down to shape (undoes broadcasting): the one place broadcast gradients are reduced.
Tensor sum_to_shape(const Tensor& x, const Shape& shape);

}  // namespace moegrad::core
