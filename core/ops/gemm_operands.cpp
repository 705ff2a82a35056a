#include "core/ops/gemm_operands.h"

#include "core/ops/creation.h"
#include "core/ops/views.h"
#include "core/precision.h"

namespace moegrad::core {

GemmDTypes gemm_dtypes(const char* op, DType dt) {
  MOEGRAD_CHECK(is_floating(dt) || dt == DType::bf16, op, "needs f32, f64 or bf16, got {}", dtype_name(dt));
  if (dt == DType::bf16 || (dt == DType::f32 && gemm_precision() == Precision::bf16))
    return {DType::bf16, DType::f32};
  return {dt, dt};
}

Tensor gemm_operand(const Tensor& t, DType to) {
  if (t.dtype() == to) return t;
  if (t.dim() >= 2 && !t.is_contiguous()) {
    const Tensor tt = transpose(t, -2, -1);
    if (tt.is_contiguous()) return transpose(to_dtype(tt, to), -2, -1);
  }
  return to_dtype(t, to);  // contiguous
}

}  // namespace moegrad::core
