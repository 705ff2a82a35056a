// Element types and the one place where a runtime dtype becomes a C++ type.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

namespace moegrad::core {

enum class DType : std::uint8_t { f32, f64, i64, b8, u8 };

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

[[noreturn]] void throw_dtype_unsupported(const char* op, DType d, const char* allowed);

// visit_dtype(d, op, f) calls f(TypeTag<T>{}) with the C++ type of d.
template <class F> decltype(auto) visit_dtype(DType d, const char* op, F&& f) {
  switch (d) {
    case DType::f32: return f(TypeTag<float>{});
    case DType::f64: return f(TypeTag<double>{});
    case DType::i64: return f(TypeTag<std::int64_t>{});
    case DType::b8: return f(TypeTag<bool>{});
    case DType::u8: return f(TypeTag<std::uint8_t>{});
  }
  throw_dtype_unsupported(op, d, "any");
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
