// The GEMM precision an autograd node records at forward time (core/precision.h). Under bf16 the
// node rounds its f32 operands once (nearest even) and keeps those bf16 copies for backward (half
// the bytes of f32); the backward's GEMMs run under the same precision whatever is set when
// backward runs (a router's FP32 gate stays FP32 in a bf16 step, and the reverse).
#pragma once
#include "core/ops.h"
#include "core/ops/gemm_operands.h"
#include "core/precision.h"

namespace moegrad::ag {

// t as the node's GEMM operand under precision p: bf16 for an f32 t under bf16, else t itself.
inline core::Tensor gemm_input(const core::Tensor& t, core::Precision p) {
  // gemm_operand keeps a transposed matrix (a weight used as W^T) in its layout.
  return p == core::Precision::bf16 && t.dtype() == core::DType::f32 ? core::gemm_operand(t, core::DType::bf16) : t;
}

}  // namespace moegrad::ag
