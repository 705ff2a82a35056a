// Reductions: validate once, plan (x as dense [A, R, B]), allocate the output, call the
// ReduceKernels (core/kernels/reduce.h) of the input's device.
// dtype rules: sum and cumsum take f32, f64, i64, and b8/u8 (converted to i64, as in PyTorch);
// amax/amin/max/min/argmax/argmin take f32, f64, i64; mean, logsumexp, norm and the softmax
// family need f32 or f64. max/amax (and min/amin) propagate NaN.
#include "core/ops/reduce.h"

#include <cmath>
#include <vector>

#include "core/backend.h"
#include "core/kernels/reduce.h"
#include "core/ops/creation.h"
#include "core/ops/dispatch.h"
#include "core/ops/elementwise.h"
#include "core/ops/views.h"

namespace moegrad::core {
namespace {

void check_input(const char* op, const Tensor& x) { check_defined(op, x); }

// dims: normalised, sorted, unique (the reduced ones). The output holds the kept dims in x's
// order, element (a, b) at a * B + b.
ReducePlan plan_reduction(const Tensor& x, const std::vector<std::int64_t>& dims) {
  const std::int64_t nd = x.dim();
  std::vector<bool> reduced(static_cast<std::size_t>(nd), false);
  for (std::int64_t d : dims) reduced[d] = true;
  std::vector<std::int64_t> kept_dims, red_dims;
  std::int64_t K = 1, R = 1;
  for (std::int64_t d = 0; d < nd; ++d) {
    if (reduced[d]) {
      red_dims.push_back(d);
      R *= x.shape()[d];
    } else {
      kept_dims.push_back(d);
      K *= x.shape()[d];
    }
  }
  std::vector<std::int64_t> rows_order = kept_dims;
  rows_order.insert(rows_order.end(), red_dims.begin(), red_dims.end());
  if (dense_in_order(x, rows_order)) return {x, K, R, 1};

  std::vector<std::int64_t> cols_order = red_dims;
  cols_order.insert(cols_order.end(), kept_dims.begin(), kept_dims.end());
  if (dense_in_order(x, cols_order)) return {x, 1, R, K};

  // Reduced dims form one consecutive block of a dense tensor: [before, block, after].
  const bool block = !dims.empty() &&
                     dims.back() - dims.front() + 1 == static_cast<std::int64_t>(dims.size());
  std::vector<std::int64_t> natural(static_cast<std::size_t>(nd));
  for (std::int64_t d = 0; d < nd; ++d) natural[d] = d;
  if (block && dense_in_order(x, natural)) {
    std::int64_t A = 1, B = 1;
    for (std::int64_t d = 0; d < dims.front(); ++d) A *= x.shape()[d];
    for (std::int64_t d = dims.back() + 1; d < nd; ++d) B *= x.shape()[d];
    return {x, A, R, B};
  }

  return {contiguous(permute(x, rows_order)), K, R, 1};
}

// dims normalised and sorted; an empty list means every dim.
std::vector<std::int64_t> reduce_dims(const char* op, const Tensor& x, const Dims& dims) {
  if (dims.empty()) {
    std::vector<std::int64_t> all(static_cast<std::size_t>(x.dim()));
    for (std::int64_t d = 0; d < x.dim(); ++d) all[d] = d;
    return all;
  }
  return normalize_dims(op, dims, x.shape());
}

Shape reduced_shape(const Shape& shape, const std::vector<std::int64_t>& dims, bool keepdim) {
  std::vector<bool> reduced(shape.size(), false);
  for (std::int64_t d : dims) reduced[d] = true;
  Shape out;
  for (std::size_t d = 0; d < shape.size(); ++d) {
    if (!reduced[d]) out.push_back(shape[d]);
    else if (keepdim) out.push_back(1);
  }
  return out;
}

std::int64_t reduced_numel(const Shape& shape, const std::vector<std::int64_t>& dims) {
  std::int64_t n = 1;
  for (std::int64_t d : dims) n *= shape[d];
  return n;
}

// One dim; a 0-d tensor accepts dim 0 or -1 (treated as one line of one element).
std::int64_t one_dim(const char* op, const Tensor& x, std::int64_t dim) {
  if (x.dim() == 0 && (dim == 0 || dim == -1)) return 0;
  return normalize_dim(op, dim, x.shape());
}

Shape one_dim_shape(const Tensor& x, std::int64_t dim, bool keepdim) {
  if (x.dim() == 0) return {};
  Shape s = x.shape();
  if (keepdim) s[dim] = 1;
  else s.erase(s.begin() + dim);
  return s;
}

void check_numeric(const char* op, DType d) {
  visit_numeric(d, op, [](auto) {});
}
void check_floating(const char* op, DType d) {
  visit_floating(d, op, [](auto) {});
}

// sum and cumsum count booleans / bytes in i64.
Tensor as_summable(const char* op, const Tensor& x) {
  if (x.dtype() == DType::b8 || x.dtype() == DType::u8) return to_dtype(x, DType::i64);
  check_numeric(op, x.dtype());
  return x;
}

void check_nonempty(const char* op, const Tensor& x, std::int64_t n) {
  MOEGRAD_CHECK(n > 0, op, "cannot reduce over an empty dim of shape {}", shape_str(x.shape()));
}

ValuesIndices extreme(const char* op, const Tensor& x, std::int64_t dim, bool keepdim,
                      bool want_values, bool is_max) {
  check_input(op, x);
  check_numeric(op, x.dtype());
  const std::int64_t d = one_dim(op, x, dim);
  check_nonempty(op, x, x.dim() == 0 ? 1 : x.shape()[d]);
  const Tensor xc = contiguous(x);
  const Shape shape = one_dim_shape(x, d, keepdim);
  ValuesIndices r;
  if (want_values) r.values = empty_for(op, shape, {x.dtype(), x.device()});
  r.indices = empty_for(op, shape, {DType::i64, x.device()});
  const ReduceKernels& k = backend<ReduceKernels>(op, x.device());
  if (want_values) (is_max ? k.max : k.min)(xc, d, r.values, r.indices);
  else (is_max ? k.argmax : k.argmin)(xc, d, r.indices);
  return r;
}

}  // namespace

Tensor sum(const Tensor& x, const Dims& dims, bool keepdim) {
  const char* op = "sum";
  check_input(op, x);
  const auto d = reduce_dims(op, x, dims);
  const Tensor xs = as_summable(op, x);
  Tensor out = empty_for(op, reduced_shape(x.shape(), d, keepdim), {xs.dtype(), x.device()});
  backend<ReduceKernels>("sum", x.device()).sum(plan_reduction(xs, d), out);
  return out;
}

Tensor mean(const Tensor& x, const Dims& dims, bool keepdim) {
  const char* op = "mean";
  check_input(op, x);
  check_floating(op, x.dtype());
  const auto d = reduce_dims(op, x, dims);
  Tensor out = empty_for(op, reduced_shape(x.shape(), d, keepdim), {x.dtype(), x.device()});
  backend<ReduceKernels>("mean", x.device()).mean(plan_reduction(x, d), out);
  return out;
}

Tensor amax(const Tensor& x, const Dims& dims, bool keepdim) {
  const char* op = "amax";
  check_input(op, x);
  check_numeric(op, x.dtype());
  const auto d = reduce_dims(op, x, dims);
  check_nonempty(op, x, reduced_numel(x.shape(), d));
  Tensor out = empty_for(op, reduced_shape(x.shape(), d, keepdim), {x.dtype(), x.device()});
  backend<ReduceKernels>("amax", x.device()).amax(plan_reduction(x, d), out);
  return out;
}

Tensor amin(const Tensor& x, const Dims& dims, bool keepdim) {
  const char* op = "amin";
  check_input(op, x);
  check_numeric(op, x.dtype());
  const auto d = reduce_dims(op, x, dims);
  check_nonempty(op, x, reduced_numel(x.shape(), d));
  Tensor out = empty_for(op, reduced_shape(x.shape(), d, keepdim), {x.dtype(), x.device()});
  backend<ReduceKernels>("amin", x.device()).amin(plan_reduction(x, d), out);
  return out;
}

Tensor logsumexp(const Tensor& x, const Dims& dims, bool keepdim) {
  const char* op = "logsumexp";
  check_input(op, x);
  check_floating(op, x.dtype());
  const auto d = reduce_dims(op, x, dims);
  Tensor out = empty_for(op, reduced_shape(x.shape(), d, keepdim), {x.dtype(), x.device()});
  backend<ReduceKernels>("logsumexp", x.device()).logsumexp(plan_reduction(x, d), out);
  return out;
}

Tensor norm(const Tensor& x, double p, const Dims& dims, bool keepdim) {
  const char* op = "norm";
  check_input(op, x);
  check_floating(op, x.dtype());
  MOEGRAD_CHECK(p > 0, op, "p must be > 0, got {}", p);
  const auto d = reduce_dims(op, x, dims);
  Tensor out = empty_for(op, reduced_shape(x.shape(), d, keepdim), {x.dtype(), x.device()});
  backend<ReduceKernels>("norm", x.device()).norm(plan_reduction(x, d), p, out);
  return out;
}

ValuesIndices max(const Tensor& x, std::int64_t dim, bool keepdim) {
  return extreme("max", x, dim, keepdim, true, true);
}
ValuesIndices min(const Tensor& x, std::int64_t dim, bool keepdim) {
  return extreme("min", x, dim, keepdim, true, false);
}
Tensor argmax(const Tensor& x, std::int64_t dim, bool keepdim) {
  return extreme("argmax", x, dim, keepdim, false, true).indices;
}
Tensor argmin(const Tensor& x, std::int64_t dim, bool keepdim) {
  return extreme("argmin", x, dim, keepdim, false, false).indices;
}

Tensor softmax(const Tensor& x, std::int64_t dim) {
  const char* op = "softmax";
  check_input(op, x);
  check_floating(op, x.dtype());
  const std::int64_t d = one_dim(op, x, dim);
  const Tensor xc = contiguous(x);
  Tensor out = empty_for(op, x.shape(), {x.dtype(), x.device()});
  backend<ReduceKernels>("softmax", x.device()).softmax(xc, d, out);
  return out;
}

Tensor log_softmax(const Tensor& x, std::int64_t dim) {
  const char* op = "log_softmax";
  check_input(op, x);
  check_floating(op, x.dtype());
  const std::int64_t d = one_dim(op, x, dim);
  const Tensor xc = contiguous(x);
  Tensor out = empty_for(op, x.shape(), {x.dtype(), x.device()});
  backend<ReduceKernels>("log_softmax", x.device()).log_softmax(xc, d, out);
  return out;
}

namespace {
Tensor softmax_backward_common(const char* op, const Tensor& gy, const Tensor& y,
                               std::int64_t dim, bool log) {
  check_defined(op, gy, "gradient");
  check_defined(op, y, "output");
  const Device device = common_device(op, {&gy, &y});
  const DType dtype = common_dtype(op, {&gy, &y});
  check_floating(op, dtype);
  MOEGRAD_CHECK(gy.shape() == y.shape(), op, "shape mismatch: gradient {} vs output {}",
                shape_str(gy.shape()), shape_str(y.shape()));
  const std::int64_t d = one_dim(op, y, dim);
  const Tensor gc = contiguous(gy), yc = contiguous(y);
  Tensor out = empty_for(op, y.shape(), {dtype, device});
  const ReduceKernels& k = backend<ReduceKernels>(op, device);
  (log ? k.log_softmax_backward : k.softmax_backward)(gc, yc, d, out);
  return out;
}
}  // namespace

Tensor softmax_backward(const Tensor& gy, const Tensor& y, std::int64_t dim) {
  return softmax_backward_common("softmax_backward", gy, y, dim, false);
}
Tensor log_softmax_backward(const Tensor& gy, const Tensor& y, std::int64_t dim) {
  return softmax_backward_common("log_softmax_backward", gy, y, dim, true);
}

Tensor cumsum(const Tensor& x, std::int64_t dim, bool exclusive, bool reverse) {
  const char* op = "cumsum";
  check_input(op, x);
  const std::int64_t d = one_dim(op, x, dim);
  const Tensor xc = contiguous(as_summable(op, x));
  Tensor out = empty_for(op, x.shape(), {xc.dtype(), x.device()});
  backend<ReduceKernels>("cumsum", x.device()).cumsum(xc, d, exclusive, reverse, out);
  return out;
}

Tensor sum_to_shape(const Tensor& x, const Shape& shape) {
  const char* op = "sum_to_shape";
  check_input(op, x);
  if (x.shape() == shape) return x;
  const std::int64_t nd = x.dim();
  const std::int64_t nt = static_cast<std::int64_t>(shape.size());
  const std::int64_t lead = nd - nt;
  bool ok = lead >= 0;
  std::vector<std::int64_t> dims;
  for (std::int64_t d = 0; ok && d < lead; ++d) dims.push_back(d);
  for (std::int64_t i = 0; ok && i < nt; ++i) {
    const std::int64_t have = x.shape()[lead + i];
    if (shape[i] == have) continue;
    if (shape[i] == 1) dims.push_back(lead + i);
    else ok = false;
  }
  MOEGRAD_CHECK(ok, op, "cannot sum {} down to {}", shape_str(x.shape()), shape_str(shape));
  const Tensor xs = as_summable(op, x);
  Tensor out = empty_for(op, shape, {xs.dtype(), x.device()});
  backend<ReduceKernels>("sum", x.device()).sum(plan_reduction(xs, dims), out);
  return out;
}

bool all_finite(const Tensor& x) {
  if (!x.defined() || !is_floating(x.dtype()) || x.numel() == 0) return true;
  // x * 0 is 0 for every finite element and NaN for Inf and NaN, so the sum is 0 exactly when all
  // are finite (no overflow, unlike summing x): two vectorised passes and one number back from a
  // GPU, instead of a byte mask scanned on the host.
  return std::isfinite(sum(mul(x, 0.0)).item<double>());
}

void assert_finite(const Tensor& x, const char* op, const char* what) {
  check_defined(op, x, what);
  if (!is_floating(x.dtype()) || x.numel() == 0) return;
  backend<ReduceKernels>(op, x.device()).report_non_finite(contiguous(x), op, what);
}

}  // namespace moegrad::core
