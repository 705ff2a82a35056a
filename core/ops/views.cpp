// View ops: new shape/strides/offset over the same storage.
#include "core/ops/views.h"

#include <algorithm>
#include <string>

#include "core/checked_math.h"
#include "core/ops/creation.h"
#include "core/ops/dispatch.h"

namespace moegrad::core {
namespace {

Tensor make_view(const Tensor& t, Shape shape, Shape strides, std::int64_t offset) {
  return Tensor(t.storage(), std::move(shape), std::move(strides), offset, t.dtype());
}

// Resolves one -1 entry and checks the element count.
Shape infer_shape(const char* op, const Shape& shape, const Tensor& t) {
  Shape out = shape;
  std::int64_t known = 1, infer = -1;
  bool overflow = false, zero = false;
  for (std::size_t i = 0; i < out.size(); ++i) {
    if (out[i] == -1) {
      MOEGRAD_CHECK(infer < 0, op, "only one dim may be -1 in {}", shape_str(shape));
      infer = static_cast<std::int64_t>(i);
    } else {
      MOEGRAD_CHECK(out[i] >= 0, op, "negative size in {}", shape_str(shape));
      overflow = overflow || !mul_fits(known, out[i], known);
      zero = zero || out[i] == 0;
    }
  }
  // Past int64 the known dims cannot match the tensor's count, unless a 0 among them ends at 0.
  if (overflow && !zero)
    fail(op, "shape {} is too large: its element count overflows int64 ({} has {})", shape_str(shape),
         describe(t), t.numel());
  if (zero) known = 0;
  if (infer >= 0) {
    MOEGRAD_CHECK(known != 0 && t.numel() % known == 0, op, "cannot infer -1 in {} for {}",
                  shape_str(shape), describe(t));
    out[infer] = t.numel() / known;
  }
  MOEGRAD_CHECK(shape_numel(out, op) == t.numel(), op, "shape {} is invalid for {} ({} elements)",
                shape_str(shape), describe(t), t.numel());
  return out;
}

// Strides for viewing t as `shape` without a copy, if possible (PyTorch's computeStride).
bool view_strides(const Tensor& t, const Shape& shape, Shape& strides) {
  strides.assign(shape.size(), 0);
  if (t.numel() == 0 || t.dim() == 0) {  // nothing to preserve: any layout is a view
    strides = contiguous_strides(shape);
    return true;
  }
  const Shape& old_shape = t.shape();
  const Shape& old_strides = t.strides();
  std::int64_t view_d = static_cast<std::int64_t>(shape.size()) - 1;
  std::int64_t chunk_base_stride = old_strides.empty() ? 1 : old_strides.back();
  std::int64_t tensor_numel = 1, view_numel = 1;
  for (std::int64_t d = static_cast<std::int64_t>(old_shape.size()) - 1; d >= 0; --d) {
    tensor_numel *= old_shape[d];
    if (d == 0 || (old_shape[d - 1] != 1 && old_strides[d - 1] != tensor_numel * chunk_base_stride)) {
      while (view_d >= 0 && (view_numel < tensor_numel || shape[view_d] == 1)) {
        strides[view_d] = view_numel * chunk_base_stride;
        view_numel *= shape[view_d];
        --view_d;
      }
      if (view_numel != tensor_numel) return false;
      if (d > 0) {
        chunk_base_stride = old_strides[d - 1];
        tensor_numel = 1;
        view_numel = 1;
      }
    }
  }
  return view_d == -1;
}

}  // namespace

Tensor view(const Tensor& t, const Shape& shape) {
  check_defined("view", t);
  const Shape out = infer_shape("view", shape, t);
  Shape strides;
  MOEGRAD_CHECK(view_strides(t, out, strides), "view",
                "cannot view {} with strides {} as {}; use reshape", describe(t),
                shape_str(t.strides()), shape_str(out));
  return make_view(t, out, strides, t.offset());
}

Tensor reshape(const Tensor& t, const Shape& shape) {
  check_defined("reshape", t);
  const Shape out = infer_shape("reshape", shape, t);
  Shape strides;
  if (view_strides(t, out, strides)) return make_view(t, out, strides, t.offset());
  return view(clone(t), out);
}

Tensor flatten(const Tensor& t, std::int64_t start_dim, std::int64_t end_dim) {
  check_defined("flatten", t);
  if (t.dim() == 0) return reshape(t, {1});
  const auto s = normalize_dim("flatten", start_dim, t.shape());
  const auto e = normalize_dim("flatten", end_dim, t.shape());
  MOEGRAD_CHECK(s <= e, "flatten", "start_dim {} after end_dim {} for {}", start_dim, end_dim, describe(t));
  Shape out(t.shape().begin(), t.shape().begin() + s);
  std::int64_t merged = 1;
  // A size-0 dim leaves the others free to overflow: inside the range it makes the merged size 0.
  const bool has_zero = std::find(t.shape().begin() + s, t.shape().begin() + e + 1, 0) != t.shape().begin() + e + 1;
  for (auto d = s; d <= e && !has_zero; ++d)
    if (!mul_fits(merged, t.shape()[d], merged))
      fail("flatten", "flattening dims {}..{} of {} is too large: the merged size overflows int64", s, e, describe(t));
  if (has_zero) merged = 0;
  out.push_back(merged);
  out.insert(out.end(), t.shape().begin() + e + 1, t.shape().end());
  return reshape(t, out);
}

Tensor permute(const Tensor& t, const std::vector<std::int64_t>& dims) {
  check_defined("permute", t);
  MOEGRAD_CHECK(static_cast<std::int64_t>(dims.size()) == t.dim(), "permute",
                "{} dims given for {}", dims.size(), describe(t));
  Shape shape(dims.size()), strides(dims.size());
  std::vector<bool> seen(dims.size(), false);
  for (std::size_t i = 0; i < dims.size(); ++i) {
    const auto d = normalize_dim("permute", dims[i], t.shape());
    MOEGRAD_CHECK(!seen[d], "permute", "repeated dim in [{}] for {}", fmt::join(dims, ", "), describe(t));
    seen[d] = true;
    shape[i] = t.shape()[d];
    strides[i] = t.strides()[d];
  }
  return make_view(t, shape, strides, t.offset());
}

Tensor transpose(const Tensor& t, std::int64_t dim0, std::int64_t dim1) {
  check_defined("transpose", t);
  const auto a = normalize_dim("transpose", dim0, t.shape());
  const auto b = normalize_dim("transpose", dim1, t.shape());
  Shape shape = t.shape(), strides = t.strides();
  std::swap(shape[a], shape[b]);
  std::swap(strides[a], strides[b]);
  return make_view(t, shape, strides, t.offset());
}

Tensor narrow(const Tensor& t, std::int64_t dim, std::int64_t start, std::int64_t length) {
  check_defined("narrow", t);
  const auto d = normalize_dim("narrow", dim, t.shape());
  const auto size = t.shape()[d];
  if (start < 0) start += size;
  if (!(start >= 0 && length >= 0 && start <= size && length <= size - start)) {
    std::int64_t end = 0;
    const std::string end_str = add_fits(start, length, end) ? std::to_string(end) : fmt::format("{} + {}", start, length);
    fail("narrow", "range [{}, {}) out of bounds for dim {} of {}", start, end_str, dim, describe(t));
  }
  Shape shape = t.shape();
  shape[d] = length;
  return make_view(t, shape, t.strides(), t.offset() + start * t.strides()[d]);
}

Tensor slice(const Tensor& t, std::int64_t dim, std::int64_t start, std::int64_t end, std::int64_t step) {
  check_defined("slice", t);
  const auto d = normalize_dim("slice", dim, t.shape());
  MOEGRAD_CHECK(step > 0, "slice", "step must be positive, got {}", step);
  const auto size = t.shape()[d];
  auto clampi = [size](std::int64_t i) { return std::clamp<std::int64_t>(i < 0 ? i + size : i, 0, size); };
  start = clampi(start);
  end = std::max(clampi(end), start);
  Shape shape = t.shape(), strides = t.strides();
  shape[d] = (end - start) / step + ((end - start) % step != 0);  // ceil without overflow
  // A size-1 dim's stride is never used to address, so only a longer one must not overflow.
  if (!mul_fits(t.strides()[d], step, strides[d])) {
    MOEGRAD_CHECK(shape[d] <= 1, "slice", "step {} is too large for dim {} of {} with stride {}", step, dim,
                  describe(t), t.strides()[d]);
    strides[d] = t.strides()[d];
  }
  return make_view(t, shape, strides, t.offset() + start * t.strides()[d]);
}

Tensor select(const Tensor& t, std::int64_t dim, std::int64_t index) {
  check_defined("select", t);
  const auto d = normalize_dim("select", dim, t.shape());
  const auto size = t.shape()[d];
  MOEGRAD_CHECK(index >= -size && index < size, "select", "index {} out of range for dim {} of {}",
                index, dim, describe(t));
  if (index < 0) index += size;
  Shape shape = t.shape(), strides = t.strides();
  const auto offset = t.offset() + index * strides[d];
  shape.erase(shape.begin() + d);
  strides.erase(strides.begin() + d);
  return make_view(t, shape, strides, offset);
}

Tensor expand(const Tensor& t, const Shape& shape) {
  check_defined("expand", t);
  const auto n = static_cast<std::int64_t>(shape.size());
  MOEGRAD_CHECK(n >= t.dim(), "expand", "cannot expand {} to fewer dims {}", describe(t), shape_str(shape));
  Shape out(n), strides(n);
  for (std::int64_t i = n - 1; i >= 0; --i) {
    const std::int64_t src = i - (n - t.dim());
    const std::int64_t have = src >= 0 ? t.shape()[src] : 1;
    const std::int64_t want = shape[i] == -1 ? have : shape[i];
    MOEGRAD_CHECK(src >= 0 || shape[i] != -1, "expand", "-1 not allowed for new dim {} in {}", i,
                  shape_str(shape));
    MOEGRAD_CHECK(have == want || have == 1, "expand", "cannot expand {} to {}", describe(t),
                  shape_str(shape));
    out[i] = want;
    strides[i] = (src >= 0 && have == want) ? t.strides()[src] : 0;
  }
  shape_numel(out, "expand");  // no memory is needed, but every tensor's count fits int64
  return make_view(t, out, strides, t.offset());
}

Tensor squeeze(const Tensor& t, std::int64_t dim) {
  check_defined("squeeze", t);
  if (t.dim() == 0) return t;
  const auto d = normalize_dim("squeeze", dim, t.shape());
  if (t.shape()[d] != 1) return t;
  Shape shape = t.shape(), strides = t.strides();
  shape.erase(shape.begin() + d);
  strides.erase(strides.begin() + d);
  return make_view(t, shape, strides, t.offset());
}

Tensor squeeze(const Tensor& t) {
  check_defined("squeeze", t);
  Shape shape, strides;
  for (std::int64_t i = 0; i < t.dim(); ++i)
    if (t.shape()[i] != 1) {
      shape.push_back(t.shape()[i]);
      strides.push_back(t.strides()[i]);
    }
  return make_view(t, shape, strides, t.offset());
}

Tensor unsqueeze(const Tensor& t, std::int64_t dim) {
  check_defined("unsqueeze", t);
  const auto d = normalize_dim_inclusive("unsqueeze", dim, t.shape());
  Shape shape = t.shape(), strides = t.strides();
  // Any stride is valid for a size-1 dim; this one keeps the view contiguous where t is.
  std::int64_t stride = 1;
  if (d < t.dim() && !mul_fits(t.strides()[d], t.shape()[d], stride)) stride = t.strides()[d];
  shape.insert(shape.begin() + d, 1);
  strides.insert(strides.begin() + d, stride);
  return make_view(t, shape, strides, t.offset());
}

Tensor as_strided(const Tensor& t, const Shape& shape, const Shape& strides, std::int64_t offset) {
  check_defined("as_strided", t);
  MOEGRAD_CHECK(shape.size() == strides.size(), "as_strided", "shape {} and strides {} differ in rank",
                shape_str(shape), shape_str(strides));
  std::int64_t hi = offset, lo = offset;
  for (std::size_t i = 0; i < shape.size(); ++i) {
    MOEGRAD_CHECK(shape[i] >= 0, "as_strided", "negative size in {}", shape_str(shape));
    if (shape[i] == 0) return make_view(t, shape, strides, offset);
  }
  for (std::size_t i = 0; i < shape.size(); ++i) {
    std::int64_t reach = 0;
    std::int64_t& end = strides[i] >= 0 ? hi : lo;
    MOEGRAD_CHECK(mul_fits(shape[i] - 1, strides[i], reach) && add_fits(end, reach, end), "as_strided",
                  "view {} strides {} offset {} is too large: its extent overflows int64", shape_str(shape),
                  shape_str(strides), offset);
  }
  const auto capacity = static_cast<std::int64_t>(t.storage()->nbytes() / dtype_size(t.dtype()));
  MOEGRAD_CHECK(lo >= 0 && hi < capacity, "as_strided",
                "view {} strides {} offset {} runs outside storage of {} elements", shape_str(shape),
                shape_str(strides), offset, capacity);
  return make_view(t, shape, strides, offset);
}

}  // namespace moegrad::core
