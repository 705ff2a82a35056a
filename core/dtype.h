// Element types and the one place where a runtime dtype becomes a C++ type.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

namespace moegrad::core {

// bf16 (last, so the tables indexed by DType keep their order) is a storage type: it converts
// from and to f32 (copy_, to_dtype: round to nearest even, core/kernels/bf16_math.h) and is an
// operand of the mixed-precision GEMMs (core/precision.h); other ops refuse it with one line.
enum class DType : std::uint8_t { f32, f64, i64, b8, u8, bf16 };

// A bfloat16 value: the high 16 bits of an IEEE f32 (1 sign, 8 exponent, 7 mantissa bits).
struct Bf16 {
  std::uint16_t bits;
};

std::size_t dtype_size(DType d);
const char* dtype_name(DType d);
inline bool is_floating(DType d) { return d == DType::f32 || d == DType::f64; }

template <class T> struct TypeTag { using type = T; };

template <class T> constexpr DType dtype_of();
template <> constexpr DType dtype_of<float>() { return DType::f32; }
template <> constexpr DType dtype_of<double>() { return DType::f64; }
template <> constexpr DType dtype_of<std::int64_t>() { return DType::i64; }
template <> constexpr DType dtype_of<bool>() { return DType::b8; }
template <> constexpr DType dtype_of<std::uint8_t>() { return DType::u8; }
template <> constexpr DType dtype_of<Bf16>() { return DType::bf16; }

[[noreturn]] void throw_dtype_unsupported(const char* op, DType d, const char* allowed);

// visit_dtype(d, op, f) calls f(TypeTag<T>{}) with the C++ type of d; bf16 is not visited (it
// is no arithmetic type: "[op] dtype bf16 not supported (needs f32, f64, i64, bool or u8)").
template <class F> decltype(auto) visit_dtype(DType d, const char* op, F&& f) {
  switch (d) {
    case DType::f32: return f(TypeTag<float>{});
    case DType::f64: return f(TypeTag<double>{});
    case DType::i64: return f(TypeTag<std::int64_t>{});
    case DType::b8: return f(TypeTag<bool>{});
    case DType::u8: return f(TypeTag<std::uint8_t>{});
    case DType::bf16: break;
  }
  throw_dtype_unsupported(op, d, "f32, f64, i64, bool or u8");
}

// Floating types only (f32, f64); other dtypes throw "[op] ... needs f32 or f64".
template <class F> decltype(auto) visit_floating(DType d, const char* op, F&& f) {
  if (d == DType::f32) return f(TypeTag<float>{});
  if (d == DType::f64) return f(TypeTag<double>{});
  throw_dtype_unsupported(op, d, "f32 or f64");
}

// Numeric types (f32, f64, i64).
template <class F> decltype(auto) visit_numeric(DType d, const char* op, F&& f) {
  if (d == DType::f32) return f(TypeTag<float>{});
  if (d == DType::f64) return f(TypeTag<double>{});
  if (d == DType::i64) return f(TypeTag<std::int64_t>{});
  throw_dtype_unsupported(op, d, "f32, f64 or i64");
}

}  // namespace moegrad::core
