// Indexing, selection and joining. Index tensors carry no gradient; the gradient of each
// op is its adjoint indexing op (gather <-> scatter_add, index_select <-> index_add, ...).
#include "autograd/functions.h"
#include "autograd/node.h"
#include "autograd/registry.h"

namespace moegrad::ag {

MOEGRAD_DIFFERENTIABLE("topk", "gather", "scatter", "scatter_add", "index_select", "index_add", "cat", "stack",
                       "chunk", "split", "pad");

namespace {
Tensor zeros_of(const Shape& shape, const Tensor& like) { return core::zeros(shape, {like.dtype(), like.device()}); }
}  // namespace

VariableIndices topk(const Variable& x, std::int64_t k, std::int64_t dim, bool largest) {
  core::ValuesIndices r = core::topk(x.value(), k, dim, largest);
  Variable values = record("topk", r.values, {x}, [shape = x.shape(), idx = r.indices, dim](const Tensor& gy, const Needs&) {
    return Grads{core::scatter(zeros_of(shape, gy), dim, idx, core::contiguous(gy))};
  });
  return {values, r.indices};
}

Variable gather(const Variable& x, std::int64_t dim, const Tensor& index) {
  return record("gather", core::gather(x.value(), dim, index), {x}, [shape = x.shape(), dim, index](const Tensor& gy, const Needs&) {
    return Grads{core::scatter_add(zeros_of(shape, gy), dim, index, core::contiguous(gy))};
  });
}

Variable scatter(const Variable& x, std::int64_t dim, const Tensor& index, const Variable& src) {
  return record("scatter", core::scatter(x.value(), dim, index, src.value()), {x, src},
                [dim, index, src_shape = src.shape()](const Tensor& gy, const Needs& need) {
                  // Overwritten positions of x get no gradient; src gets the gradient of where it landed.
                  Tensor gx = need[0] ? core::scatter(gy, dim, index, zeros_of(src_shape, gy)) : Tensor{};
                  Tensor gs = need[1] ? core::gather(gy, dim, index) : Tensor{};
                  return Grads{gx, gs};
                });
}

Variable scatter_add(const Variable& x, std::int64_t dim, const Tensor& index, const Variable& src) {
  return record("scatter_add", core::scatter_add(x.value(), dim, index, src.value()), {x, src},
                [dim, index](const Tensor& gy, const Needs& need) {
                  return Grads{gy, need[1] ? core::gather(gy, dim, index) : Tensor{}};
                });
}

Variable index_select(const Variable& x, std::int64_t dim, const Tensor& index) {
  return record("index_select", core::index_select(x.value(), dim, index), {x},
                [shape = x.shape(), dim, index](const Tensor& gy, const Needs&) {
                  return Grads{core::index_add(zeros_of(shape, gy), dim, index, gy)};
                });
}

Variable index_add(const Variable& x, std::int64_t dim, const Tensor& index, const Variable& src) {
  return record("index_add", core::index_add(x.value(), dim, index, src.value()), {x, src},
                [dim, index](const Tensor& gy, const Needs& need) {
                  return Grads{gy, need[1] ? core::index_select(gy, dim, index) : Tensor{}};
                });
}

Variable cat(const std::vector<Variable>& xs, std::int64_t dim) {
  std::vector<Tensor> values;
  std::vector<std::int64_t> sizes;
  for (const auto& x : xs) {
    values.push_back(x.value());
    sizes.push_back(x.dim() > 0 ? x.size(dim) : 0);
  }
  Tensor y = core::cat(values, dim);
  return record("cat", y, xs, [sizes, dim](const Tensor& gy, const Needs& need) {
    Grads g(sizes.size());
    std::int64_t offset = 0;
    for (std::size_t i = 0; i < sizes.size(); ++i) {
      if (need[i]) g[i] = core::narrow(gy, dim, offset, sizes[i]);
      offset += sizes[i];
    }
    return g;
  });
}

Variable stack(const std::vector<Variable>& xs, std::int64_t dim) {
  std::vector<Tensor> values;
  for (const auto& x : xs) values.push_back(x.value());
  Tensor y = core::stack(values, dim);
  const auto d = core::normalize_dim("stack", dim, y.shape());
  return record("stack", y, xs, [d, n = xs.size()](const Tensor& gy, const Needs& need) {
    Grads g(n);
    for (std::size_t i = 0; i < n; ++i)
      if (need[i]) g[i] = core::select(gy, d, static_cast<std::int64_t>(i));
    return g;
  });
}

// chunk and split return narrow views, each recorded as its own node.
std::vector<Variable> split(const Variable& x, const std::vector<std::int64_t>& sizes, std::int64_t dim) {
  const auto parts = core::split(x.value(), sizes, dim);  // validates sizes
  std::vector<Variable> out;
  std::int64_t offset = 0;
  for (const auto& p : parts) {
    const auto len = p.size(dim);
    out.push_back(narrow(x, dim, offset, len));
    offset += len;
  }
  return out;
}

std::vector<Variable> split(const Variable& x, std::int64_t split_size, std::int64_t dim) {
  std::vector<std::int64_t> sizes;
  for (const auto& p : core::split(x.value(), split_size, dim)) sizes.push_back(p.size(dim));
  return split(x, sizes, dim);
}

std::vector<Variable> chunk(const Variable& x, std::int64_t chunks, std::int64_t dim) {
  std::vector<std::int64_t> sizes;
  for (const auto& p : core::chunk(x.value(), chunks, dim)) sizes.push_back(p.size(dim));
  return split(x, sizes, dim);
}

// The adjoint of padding is cropping by the same amounts, and of cropping is zero-padding:
// both are pad with the amounts negated.
Variable pad(const Variable& x, const std::vector<std::int64_t>& pads, double value) {
  return record("pad", core::pad(x.value(), pads, value), {x}, [pads](const Tensor& gy, const Needs&) {
    std::vector<std::int64_t> inverse(pads.size());
    for (std::size_t i = 0; i < pads.size(); ++i) inverse[i] = -pads[i];
    return Grads{core::pad(gy, inverse, 0.0)};
  });
}

Tensor argmax(const Variable& x, std::int64_t dim, bool keepdim) { return core::argmax(x.value(), dim, keepdim); }
Tensor argmin(const Variable& x, std::int64_t dim, bool keepdim) { return core::argmin(x.value(), dim, keepdim); }
Tensor one_hot(const Tensor& indices, std::int64_t num_classes, DType dtype) { return core::one_hot(indices, num_classes, dtype); }

}  // namespace moegrad::ag
