// Reductions, softmax and cumsum. Gradients of reduced outputs are re-expanded over the
// reduced dims with expand_reduced (a stride-0 view, no copy).
#include <cmath>
#include <limits>

#include "autograd/functions.h"
#include "autograd/node.h"
#include "autograd/registry.h"

namespace moegrad::ag {

MOEGRAD_DIFFERENTIABLE("sum", "mean", "amax", "amin", "max", "min", "logsumexp", "norm", "softmax", "log_softmax",
                       "cumsum");

namespace {

// gy has x's shape with `dims` reduced (kept or dropped); view it with x's shape.
Tensor expand_reduced(const Tensor& gy, const Shape& x_shape, const Dims& dims, bool keepdim) {
  Tensor g = gy;
  if (!keepdim) {
    const auto norm_dims = core::normalize_dims("reduce backward", dims, x_shape);
    for (auto d : norm_dims) g = core::unsqueeze(g, d);
  }
  return core::expand(g, x_shape);
}

std::int64_t reduced_count(const Shape& shape, const Dims& dims) {
  std::int64_t n = 1;
  for (auto d : core::normalize_dims("mean", dims, shape)) n *= shape[d];
  return n;
}

// amax/amin: the gradient is shared equally among the elements equal to the extreme.
Variable extreme(const char* name, Tensor y, const Variable& x, const Dims& dims, bool keepdim) {
  return record(name, y, {x}, [X = x.value(), y, dims, keepdim](const Tensor& gy, const Needs&) {
    Tensor hit = core::to_dtype(core::eq(X, expand_reduced(y, X.shape(), dims, keepdim)), gy.dtype());
    Tensor count = core::sum(hit, dims, true);
    Tensor g = expand_reduced(gy, X.shape(), dims, keepdim);
    return Grads{core::div(core::mul(g, hit), count)};
  });
}

// max/min over one dim: the gradient goes to the reported index.
VariableIndices indexed_extreme(const char* name, core::ValuesIndices r, const Variable& x, std::int64_t dim,
                                bool keepdim) {
  Tensor idx = r.indices;
  Variable values = record(name, r.values, {x}, [shape = x.shape(), idx, dim, keepdim](const Tensor& gy, const Needs&) {
    const auto d = core::normalize_dim("max backward", dim, shape);
    Tensor g = keepdim ? gy : core::unsqueeze(gy, d);
    Tensor i = keepdim ? idx : core::unsqueeze(idx, d);
    return Grads{core::scatter_add(core::zeros(shape, {gy.dtype(), gy.device()}), d, i, core::contiguous(g))};
  });
  return {values, r.indices};
}

}  // namespace

Variable sum(const Variable& x, const Dims& dims, bool keepdim) {
  return record("sum", core::sum(x.value(), dims, keepdim), {x}, [shape = x.shape(), dims, keepdim](const Tensor& gy, const Needs&) {
    return Grads{expand_reduced(gy, shape, dims, keepdim)};
  });
}

Variable mean(const Variable& x, const Dims& dims, bool keepdim) {
  return record("mean", core::mean(x.value(), dims, keepdim), {x}, [shape = x.shape(), dims, keepdim](const Tensor& gy, const Needs&) {
    const double inv = 1.0 / static_cast<double>(reduced_count(shape, dims));
    return Grads{expand_reduced(core::mul(gy, inv), shape, dims, keepdim)};
  });
}

Variable amax(const Variable& x, const Dims& dims, bool keepdim) {
  return extreme("amax", core::amax(x.value(), dims, keepdim), x, dims, keepdim);
}
Variable amin(const Variable& x, const Dims& dims, bool keepdim) {
  return extreme("amin", core::amin(x.value(), dims, keepdim), x, dims, keepdim);
}
VariableIndices max(const Variable& x, std::int64_t dim, bool keepdim) {
  return indexed_extreme("max", core::max(x.value(), dim, keepdim), x, dim, keepdim);
}
VariableIndices min(const Variable& x, std::int64_t dim, bool keepdim) {
  return indexed_extreme("min", core::min(x.value(), dim, keepdim), x, dim, keepdim);
}

Variable logsumexp(const Variable& x, const Dims& dims, bool keepdim) {
  Tensor y = core::logsumexp(x.value(), dims, keepdim);
  return record("logsumexp", y, {x}, [X = x.value(), y, dims, keepdim](const Tensor& gy, const Needs&) {
    // d lse / dx = exp(x - lse) = softmax over the reduced dims
    Tensor p = core::exp(core::sub(X, expand_reduced(y, X.shape(), dims, keepdim)));
    return Grads{core::mul(expand_reduced(gy, X.shape(), dims, keepdim), p)};
  });
}

Variable norm(const Variable& x, double p, const Dims& dims, bool keepdim) {
  Tensor y = core::norm(x.value(), p, dims, keepdim);
  return record("norm", y, {x}, [X = x.value(), y, p, dims, keepdim](const Tensor& gy, const Needs&) {
    // d ||x||_p / dx = sign(x)|x|^(p-1) / ||x||^(p-1); zero where the norm is zero. The
    // denominator and both masks are computed at y's (reduced) shape and then expanded: three
    // passes over x's shape instead of six.
    const auto expand = [&](const Tensor& t) { return expand_reduced(t, X.shape(), dims, keepdim); };
    Tensor num = p == 2.0 ? X : core::mul(core::sign(X), core::pow(core::abs(X), p - 1.0));
    Tensor den = p == 2.0 ? y : core::pow(y, p - 1.0);
    Tensor safe = core::where(core::eq(den, 0.0), core::ones({}, {den.dtype(), den.device()}), den);
    Tensor g = core::div(core::mul(expand(gy), num), expand(safe));
    return Grads{core::where(expand(core::eq(y, 0.0)), core::zeros({}, {g.dtype(), g.device()}), g)};
  });
}

Variable softmax(const Variable& x, std::int64_t dim) {
  Tensor y = core::softmax(x.value(), dim);
  return record("softmax", y, {x}, [y, dim](const Tensor& gy, const Needs&) {
    return Grads{core::softmax_backward(gy, y, dim)};
  });
}

Variable log_softmax(const Variable& x, std::int64_t dim) {
  Tensor y = core::log_softmax(x.value(), dim);
  return record("log_softmax", y, {x}, [y, dim](const Tensor& gy, const Needs&) {
    return Grads{core::log_softmax_backward(gy, y, dim)};
  });
}

// The adjoint of a forward cumsum is the same cumsum run in the other direction.
Variable cumsum(const Variable& x, std::int64_t dim, bool exclusive, bool reverse) {
  return record("cumsum", core::cumsum(x.value(), dim, exclusive, reverse), {x}, [dim, exclusive, reverse](const Tensor& gy, const Needs&) {
    return Grads{core::cumsum(gy, dim, exclusive, !reverse)};
  });
}

}  // namespace moegrad::ag
