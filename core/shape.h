// Shapes and strides (in elements), broadcasting and dim normalisation.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace moegrad::core {

using Shape = std::vector<std::int64_t>;

// The element count; every size must be >= 0 and the count must fit int64 (core/checked_math.h):
// "[op] negative size in shape (2, -1)", "[op] shape (9223372036854775807, 16) is too large: ...".
std::int64_t shape_numel(const Shape& shape, const char* op = "shape");
// Row-major strides (size-0 dims count as 1); throws "[op] ... is too large" past int64.
Shape contiguous_strides(const Shape& shape, const char* op = "shape");
std::string shape_str(const Shape& shape);  // "(2, 3)"; "()" for 0-d

// NumPy broadcasting of two shapes; throws "[op] shapes (..) and (..) do not broadcast", or
// "[op] shape (..) is too large" when the result's element count overflows int64.
Shape broadcast_shapes(const char* op, const Shape& a, const Shape& b);
// dim in [-ndim, ndim) -> [0, ndim); throws "[op] dim d out of range for shape (..)".
std::int64_t normalize_dim(const char* op, std::int64_t dim, const Shape& shape);
// For unsqueeze-like ops where dim may equal ndim.
std::int64_t normalize_dim_inclusive(const char* op, std::int64_t dim, const Shape& shape);
// Several dims, sorted, without duplicates; empty list means "all dims".
std::vector<std::int64_t> normalize_dims(const char* op, const std::vector<std::int64_t>& dims,
                                         const Shape& shape);

}  // namespace moegrad::core
