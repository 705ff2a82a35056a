// Indexing and selection: validate once, allocate, call the IndexingKernels
// (core/kernels/indexing.h) of the tensors' device.
#include "core/ops/indexing.h"

#include "core/backend.h"
#include "core/kernels/indexing.h"
#include "core/ops/creation.h"
#include "core/ops/dispatch.h"
#include "core/ops/views.h"

namespace moegrad::core {
namespace {

void require_index(const char* op, const Tensor& index) {
  MOEGRAD_CHECK(index.dtype() == DType::i64, op, "index must be i64, got {}", describe(index));
}

// A 0-d tensor is treated as 1-D of size 1 along dim 0 (or -1), as PyTorch does.
void check_scalar_dim(const char* op, std::int64_t dim) {
  MOEGRAD_CHECK(dim == 0 || dim == -1, op, "dim {} out of range for shape ()", dim);
}

// gather/scatter rule: index has x's ndim, and index.size(d) <= x.size(d) for d != dim.
void check_index_fits(const char* op, const Tensor& x, std::int64_t dim, const Tensor& index) {
  MOEGRAD_CHECK(index.dim() == x.dim(), op,
                "index must have the input's number of dims: index {} vs input {}",
                describe(index), describe(x));
  for (std::int64_t d = 0; d < x.dim(); ++d)
    MOEGRAD_CHECK(d == dim || index.size(d) <= x.size(d), op,
                  "index {} is larger than input {} at dim {}", describe(index), describe(x), d);
}

// The shared prologue of the index ops: both defined, on one device, i64 index.
void check_index_args(const char* op, const Tensor& x, const Tensor& index) {
  check_defined(op, x);
  check_defined(op, index, "index");
  common_device(op, {&x, &index});
  require_index(op, index);
}

}  // namespace

ValuesIndices topk(const Tensor& x, std::int64_t k, std::int64_t dim, bool largest) {
  const char* op = "topk";
  check_defined(op, x);
  if (x.dim() == 0) {
    check_scalar_dim(op, dim);
    MOEGRAD_CHECK(k == 0 || k == 1, op, "k = {} out of range for a 0-d input", k);
    ValuesIndices r = topk(reshape(x, {1}), k, 0, largest);
    if (k == 1) r = {reshape(r.values, {}), reshape(r.indices, {})};
    return r;
  }
  const std::int64_t d = normalize_dim(op, dim, x.shape());
  MOEGRAD_CHECK(k >= 0 && k <= x.size(d), op, "k = {} out of range for dim {} of size {} in {}",
                k, d, x.size(d), describe(x));
  Shape shape = x.shape();
  shape[d] = k;
  ValuesIndices r{empty_for(op, shape, {x.dtype(), x.device()}), empty_for(op, shape, {DType::i64, x.device()})};
  backend<IndexingKernels>("topk", x.device()).topk(x, k, d, largest, r.values, r.indices);
  return r;
}

Tensor one_hot(const Tensor& indices, std::int64_t num_classes, DType dtype) {
  const char* op = "one_hot";
  check_defined(op, indices, "indices");
  MOEGRAD_CHECK(indices.dtype() == DType::i64, op, "indices must be i64, got {}",
                describe(indices));
  MOEGRAD_CHECK(num_classes >= 0, op, "num_classes must be >= 0, got {}", num_classes);
  Shape shape = indices.shape();
  shape.push_back(num_classes);
  Tensor out = empty_for(op, shape, {dtype, indices.device()});
  fill_(out, 0.0);
  backend<IndexingKernels>("one_hot", indices.device()).one_hot(indices, out);
  return out;
}

Tensor gather(const Tensor& x, std::int64_t dim, const Tensor& index) {
  const char* op = "gather";
  check_index_args(op, x, index);
  if (x.dim() == 0 && index.dim() == 0) {
    check_scalar_dim(op, dim);
    return reshape(gather(reshape(x, {1}), 0, reshape(index, {1})), {});
  }
  const std::int64_t d = normalize_dim(op, dim, x.shape());
  check_index_fits(op, x, d, index);
  Tensor out = empty_for(op, index.shape(), {x.dtype(), x.device()});
  backend<IndexingKernels>("gather", x.device()).gather(x, d, index, out);
  return out;
}

namespace {

template <bool Accumulate>
Tensor scatter_op(const char* op, const Tensor& x, std::int64_t dim, const Tensor& index,
                  const Tensor& src) {
  check_defined(op, x);
  check_defined(op, index, "index");
  check_defined(op, src, "src");
  common_device(op, {&x, &index, &src});
  require_index(op, index);
  common_dtype(op, {&x, &src});
  if (x.dim() == 0 && index.dim() == 0 && src.dim() == 0) {
    check_scalar_dim(op, dim);
    return reshape(scatter_op<Accumulate>(op, reshape(x, {1}), 0, reshape(index, {1}),
                                          reshape(src, {1})),
                   {});
  }
  const std::int64_t d = normalize_dim(op, dim, x.shape());
  check_index_fits(op, x, d, index);
  MOEGRAD_CHECK(src.dim() == index.dim(), op,
                "src must have the index's number of dims: src {} vs index {}", describe(src),
                describe(index));
  for (std::int64_t i = 0; i < src.dim(); ++i)
    MOEGRAD_CHECK(index.size(i) <= src.size(i), op, "index {} is larger than src {} at dim {}",
                  describe(index), describe(src), i);
  Tensor out = clone(x);
  const IndexingKernels& k = backend<IndexingKernels>(op, x.device());
  (Accumulate ? k.scatter_add : k.scatter)(out, d, index, src);
  return out;
}

}  // namespace

Tensor scatter(const Tensor& x, std::int64_t dim, const Tensor& index, const Tensor& src) {
  return scatter_op<false>("scatter", x, dim, index, src);
}

Tensor scatter_add(const Tensor& x, std::int64_t dim, const Tensor& index, const Tensor& src) {
  return scatter_op<true>("scatter_add", x, dim, index, src);
}

Tensor index_select(const Tensor& x, std::int64_t dim, const Tensor& index) {
  const char* op = "index_select";
  check_index_args(op, x, index);
  MOEGRAD_CHECK(index.dim() <= 1, op, "index must be 1-D, got {}", describe(index));
  if (x.dim() == 0) {
    check_scalar_dim(op, dim);
    MOEGRAD_CHECK(index.numel() == 1, op, "index {} must have one element for a 0-d input",
                  describe(index));
    return reshape(index_select(reshape(x, {1}), 0, index), {});
  }
  const std::int64_t d = normalize_dim(op, dim, x.shape());
  Shape shape = x.shape();
  shape[d] = index.numel();
  Tensor out = empty_for(op, shape, {x.dtype(), x.device()});
  backend<IndexingKernels>("index_select", x.device()).index_select(x, d, index, out);
  return out;
}

Tensor index_add(const Tensor& x, std::int64_t dim, const Tensor& index, const Tensor& src) {
  const char* op = "index_add";
  check_defined(op, x);
  check_defined(op, index, "index");
  check_defined(op, src, "src");
  common_device(op, {&x, &index, &src});
  require_index(op, index);
  common_dtype(op, {&x, &src});
  MOEGRAD_CHECK(index.dim() <= 1, op, "index must be 1-D, got {}", describe(index));
  if (x.dim() == 0) {
    check_scalar_dim(op, dim);
    MOEGRAD_CHECK(index.numel() == 1 && src.numel() == 1, op,
                  "a 0-d input needs one index and one src value, got index {} and src {}",
                  describe(index), describe(src));
    return reshape(index_add(reshape(x, {1}), 0, index, reshape(src, {1})), {});
  }
  const std::int64_t d = normalize_dim(op, dim, x.shape());
  Shape want = x.shape();
  want[d] = index.numel();
  MOEGRAD_CHECK(src.shape() == want, op, "src shape {} should be {} (input {}, index {})",
                shape_str(src.shape()), shape_str(want), describe(x), describe(index));
  Tensor out = clone(x);
  backend<IndexingKernels>("index_add", x.device()).index_add(out, d, index, src);
  return out;
}

}  // namespace moegrad::core
