// Matrix products through BLAS (CPU) / cuBLAS (CUDA).
#pragma once
#include "core/tensor.h"

namespace moegrad::core {

// a [..., m, k] @ b [..., k, n] -> [..., m, n]; batch dims broadcast. 1-D operands are
// treated as in NumPy (a vector as a row of a, or as a column of b, and that dim is dropped).
// trans_a / trans_b use the transpose of the last two dims without copying. Operands f32 or f64
// (equal), or both bf16: bf16 operands, and f32 ones while core::gemm_precision() is bf16
// (core/precision.h), give an f32 product accumulated in f32.
Tensor matmul(const Tensor& a, const Tensor& b, bool trans_a = false, bool trans_b = false);

// out = beta * out + alpha * op(a) @ op(b); out [..., m, n] must be contiguous and not broadcast.
void matmul_into(const Tensor& out, const Tensor& a, const Tensor& b, bool trans_a, bool trans_b,
                 double alpha = 1.0, double beta = 0.0);

}  // namespace moegrad::core
