// The precision policy of the GEMMs (core/precision.h), applied in the two places that issue them
// (core/ops/linalg.cpp, core/ops/moe.cpp): which dtype the operands take and which the result has.
#pragma once
#include "core/tensor.h"

namespace moegrad::core {

struct GemmDTypes {
  DType operands;  // what the kernel reads: f32, f64 or bf16
  DType result;    // what it accumulates into and writes: f32 or f64
};

// For operands of dtype dt: f32 and f64 as they are; bf16 operands, and f32 ones while
// gemm_precision() is bf16, as bf16 x bf16 -> f32 (GemmKernels<Bf16, float>). Other dtypes:
// "[op] needs f32, f64 or bf16, got i64".
GemmDTypes gemm_dtypes(const char* op, DType dt);

// t as an operand of dtype `to` (t's own, or bf16 for an f32 t, rounded to nearest even). A
// matrix stored transposed (a weight used as W^T) keeps that layout: it converts without a
// transposing copy, and the kernel reads it with trans set.
Tensor gemm_operand(const Tensor& t, DType to);

}  // namespace moegrad::core
