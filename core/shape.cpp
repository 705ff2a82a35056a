#include "core/shape.h"

#include <algorithm>

#include "core/checked_math.h"
#include "core/error.h"

namespace moegrad::core {

std::int64_t shape_numel(const Shape& shape, const char* op) {
  std::int64_t n = 1;
  bool overflow = false;
  for (auto s : shape) {
    MOEGRAD_CHECK(s >= 0, op, "negative size in shape {}", shape_str(shape));
    overflow = overflow || !mul_fits(n, s, n);
  }
  // A zero size anywhere makes the count 0 even when a prefix overflowed.
  if (overflow && std::find(shape.begin(), shape.end(), 0) == shape.end())
    fail(op, "shape {} is too large: its element count overflows int64", shape_str(shape));
  return overflow ? 0 : n;
}

Shape contiguous_strides(const Shape& shape, const char* op) {
  Shape strides(shape.size());
  std::int64_t s = 1;
  for (std::size_t i = shape.size(); i-- > 0;) {
    strides[i] = s;
    if (i > 0 && !mul_fits(s, std::max<std::int64_t>(shape[i], 1), s))
      fail(op, "shape {} is too large: its strides overflow int64", shape_str(shape));
  }
  return strides;
}

std::string shape_str(const Shape& shape) {
  if (shape.size() == 1) return fmt::format("({},)", shape[0]);
  return fmt::format("({})", fmt::join(shape, ", "));
}

Shape broadcast_shapes(const char* op, const Shape& a, const Shape& b) {
  const std::size_t n = std::max(a.size(), b.size());
  Shape out(n);
  for (std::size_t i = 0; i < n; ++i) {
    const std::int64_t da = i < n - a.size() ? 1 : a[i - (n - a.size())];
    const std::int64_t db = i < n - b.size() ? 1 : b[i - (n - b.size())];
    MOEGRAD_CHECK(da == db || da == 1 || db == 1, op, "shapes {} and {} do not broadcast",
                  shape_str(a), shape_str(b));
    out[i] = da == 1 ? db : da;
  }
  shape_numel(out, op);
  return out;
}

std::int64_t normalize_dim(const char* op, std::int64_t dim, const Shape& shape) {
  const auto n = static_cast<std::int64_t>(shape.size());
  MOEGRAD_CHECK(dim >= -n && dim < n, op, "dim {} out of range for shape {}", dim,
                shape_str(shape));
  return dim < 0 ? dim + n : dim;
}

std::int64_t normalize_dim_inclusive(const char* op, std::int64_t dim, const Shape& shape) {
  const auto n = static_cast<std::int64_t>(shape.size());
  MOEGRAD_CHECK(dim >= -n - 1 && dim <= n, op, "dim {} out of range for shape {}", dim,
                shape_str(shape));
  return dim < 0 ? dim + n + 1 : dim;
}

std::vector<std::int64_t> normalize_dims(const char* op, const std::vector<std::int64_t>& dims,
                                         const Shape& shape) {
  std::vector<std::int64_t> out;
  if (dims.empty()) {
    for (std::size_t i = 0; i < shape.size(); ++i) out.push_back(static_cast<std::int64_t>(i));
    return out;
  }
  for (auto d : dims) out.push_back(normalize_dim(op, d, shape));
  std::sort(out.begin(), out.end());
  MOEGRAD_CHECK(std::adjacent_find(out.begin(), out.end()) == out.end(), op,
                "repeated dim in [{}] for shape {}", fmt::join(dims, ", "), shape_str(shape));
  return out;
}

}  // namespace moegrad::core
