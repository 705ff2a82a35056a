#include "core/dtype.h"

#include "core/error.h"

namespace moegrad::core {

std::size_t dtype_size(DType d) {
  switch (d) {
    case DType::f32: return 4;
    case DType::f64: return 8;
    case DType::i64: return 8;
    case DType::b8: return 1;
    case DType::u8: return 1;
    case DType::bf16: return 2;
  }
  return 0;
}

const char* dtype_name(DType d) {
  switch (d) {
    case DType::f32: return "f32";
    case DType::f64: return "f64";
    case DType::i64: return "i64";
    case DType::b8: return "bool";
    case DType::u8: return "u8";
    case DType::bf16: return "bf16";
  }
  return "?";
}

void throw_dtype_unsupported(const char* op, DType d, const char* allowed) {
  fail(op, "dtype {} not supported (needs {})", dtype_name(d), allowed);
}

}  // namespace moegrad::core
