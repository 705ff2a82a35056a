// Views and shape ops. Backward of a view that picks part of x (narrow, slice, select)
// writes the gradient into that part of a zero tensor of x's shape.
#include <numeric>

#include "autograd/functions.h"
#include "autograd/node.h"
#include "autograd/registry.h"

namespace moegrad::ag {

MOEGRAD_DIFFERENTIABLE("reshape", "view", "flatten", "permute", "transpose", "narrow", "slice", "select", "expand",
                       "squeeze", "unsqueeze", "contiguous", "to_dtype");

namespace {

// Shape-only change: the gradient is gy reshaped back.
Variable reshaped(const char* name, Tensor y, const Variable& x) {
  return record(name, std::move(y), {x}, [shape = x.shape()](const Tensor& gy, const Needs&) {
    return Grads{core::reshape(gy, shape)};
  });
}

// y is a view of part of x, given by pick(x_like): the gradient is zero elsewhere.
template <class Pick>
Variable picked(const char* name, const Variable& x, Pick pick) {
  return record(name, pick(x.value()), {x}, [shape = x.shape(), pick](const Tensor& gy, const Needs&) {
    Tensor gx = core::zeros(shape, {gy.dtype(), gy.device()});
    core::copy_(pick(gx), gy);
    return Grads{gx};
  });
}

}  // namespace

Variable reshape(const Variable& x, const Shape& shape) { return reshaped("reshape", core::reshape(x.value(), shape), x); }
Variable view(const Variable& x, const Shape& shape) { return reshaped("view", core::view(x.value(), shape), x); }
Variable flatten(const Variable& x, std::int64_t s, std::int64_t e) { return reshaped("flatten", core::flatten(x.value(), s, e), x); }
Variable squeeze(const Variable& x, std::int64_t dim) { return reshaped("squeeze", core::squeeze(x.value(), dim), x); }
Variable unsqueeze(const Variable& x, std::int64_t dim) { return reshaped("unsqueeze", core::unsqueeze(x.value(), dim), x); }

Variable permute(const Variable& x, const Dims& dims) {
  Tensor y = core::permute(x.value(), dims);
  Dims inverse(dims.size());
  for (std::size_t i = 0; i < dims.size(); ++i)
    inverse[core::normalize_dim("permute", dims[i], x.shape())] = static_cast<std::int64_t>(i);
  return record("permute", y, {x}, [inverse](const Tensor& gy, const Needs&) { return Grads{core::permute(gy, inverse)}; });
}

Variable transpose(const Variable& x, std::int64_t d0, std::int64_t d1) {
  return record("transpose", core::transpose(x.value(), d0, d1), {x},
                [d0, d1](const Tensor& gy, const Needs&) { return Grads{core::transpose(gy, d0, d1)}; });
}

Variable narrow(const Variable& x, std::int64_t dim, std::int64_t start, std::int64_t length) {
  return picked("narrow", x, [dim, start, length](const Tensor& t) { return core::narrow(t, dim, start, length); });
}
Variable slice(const Variable& x, std::int64_t dim, std::int64_t start, std::int64_t end, std::int64_t step) {
  return picked("slice", x, [dim, start, end, step](const Tensor& t) { return core::slice(t, dim, start, end, step); });
}
Variable select(const Variable& x, std::int64_t dim, std::int64_t index) {
  return picked("select", x, [dim, index](const Tensor& t) { return core::select(t, dim, index); });
}

// The engine sums the expanded gradient back to x's shape.
Variable expand(const Variable& x, const Shape& shape) {
  return record("expand", core::expand(x.value(), shape), {x}, [](const Tensor& gy, const Needs&) { return Grads{gy}; });
}

Variable contiguous(const Variable& x) {
  return record("contiguous", core::contiguous(x.value()), {x}, [](const Tensor& gy, const Needs&) { return Grads{gy}; });
}

Variable to_dtype(const Variable& x, DType dtype) {
  MOEGRAD_CHECK(!x.requires_grad() || core::is_floating(dtype), "to_dtype",
                "a gradient cannot flow through a conversion of {} to {}", core::describe(x.value()), core::dtype_name(dtype));
  return record("to_dtype", core::to_dtype(x.value(), dtype), {x}, [from = x.dtype()](const Tensor& gy, const Needs&) {
    return Grads{core::to_dtype(gy, from)};
  });
}

}  // namespace moegrad::ag
