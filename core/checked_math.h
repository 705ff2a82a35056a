// Size arithmetic that cannot overflow silently: element counts, strides, byte counts, offsets
// and concatenated lengths go through these (shape_numel, contiguous_strides, empty_for's byte
// count, cat, pad, MoE row counts), so a size past int64 is an error naming the op, never a
// wrapped value that later under-allocates.
//   checked_mul("zeros", "shape (9223372036854775807, 16)", a, b)
//     -> "[zeros] shape (9223372036854775807, 16) is too large: 9223372036854775807 * 16 overflows int64"
#pragma once
#include <fmt/format.h>

#include <cstdint>
#include <initializer_list>
#include <string>
#include <string_view>

#include "core/error.h"

namespace moegrad::core {

// a * b and a + b into out; false when the exact result does not fit int64.
inline bool mul_fits(std::int64_t a, std::int64_t b, std::int64_t& out) {
  return !__builtin_mul_overflow(a, b, &out);
}
inline bool add_fits(std::int64_t a, std::int64_t b, std::int64_t& out) {
  return !__builtin_add_overflow(a, b, &out);
}

// For work estimates (thread counts) only: the product, or INT64_MAX past it. a, b >= 0.
inline std::int64_t saturating_mul(std::int64_t a, std::int64_t b) {
  std::int64_t out = 0;
  return mul_fits(a, b, out) ? out : INT64_MAX;
}

// Throwing forms: "[op] <what> is too large: a * b overflows int64".
inline std::int64_t checked_mul(const char* op, std::string_view what, std::int64_t a, std::int64_t b) {
  std::int64_t out = 0;
  if (!mul_fits(a, b, out)) fail(op, "{} is too large: {} * {} overflows int64", what, a, b);
  return out;
}
inline std::int64_t checked_add(const char* op, std::string_view what, std::int64_t a, std::int64_t b) {
  std::int64_t out = 0;
  if (!add_fits(a, b, out)) fail(op, "{} is too large: {} + {} overflows int64", what, a, b);
  return out;
}
// The product of several sizes (>= 0), e.g. groups * experts * capacity.
inline std::int64_t checked_product(const char* op, std::string_view what,
                                    std::initializer_list<std::int64_t> factors) {
  std::int64_t out = 1;
  for (std::int64_t f : factors) {
    if (!mul_fits(out, f, out))
      fail(op, "{} is too large: the product of [{}] overflows int64", what, fmt::join(factors, ", "));
  }
  return out;
}

// "128.0 GiB", "512 bytes".
inline std::string readable_bytes(std::uint64_t bytes) {
  static constexpr const char* kUnits[] = {"KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
  if (bytes < 1024) return fmt::format("{} bytes", bytes);
  double v = static_cast<double>(bytes) / 1024.0;
  int unit = 0;
  while (v >= 1024.0 && unit < 5) {
    v /= 1024.0;
    ++unit;
  }
  return fmt::format("{:.1f} {}", v, kUnits[unit]);
}
// "137438953472 bytes (128.0 GiB)": exact, then readable.
inline std::string bytes_str(std::uint64_t bytes) {
  if (bytes < 1024) return fmt::format("{} bytes", bytes);
  return fmt::format("{} bytes ({})", bytes, readable_bytes(bytes));
}

}  // namespace moegrad::core
