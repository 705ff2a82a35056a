// The contiguous f32 -> bf16 conversion (copy_ / to_dtype of contiguous tensors: the GEMM operands
// of --precision bf16, core/precision.h), declared once. Both backends give exactly
// math::bf16_bits_rne's result (round to nearest even, core/kernels/bf16_math.h): the CPU runs
// AVX512_BF16's vcvtne2ps2bf16 where the CPU has it and takes the scalar rule for any block of 32
// holding a subnormal (which that instruction flushes to zero), else the scalar rule throughout;
// CUDA one grid-stride kernel over the same function. Strided or broadcast conversions go through
// the elementwise map (run_map with math::ToBf16), with the same results.
#pragma once
#include <cstdint>

#include "core/dtype.h"

namespace moegrad::core {

struct ConvertKernels {
  // out[i] = bf16(in[i]) for i in [0, n); pointers on `device` (the CPU ignores the index).
  void (*f32_to_bf16)(const float* in, Bf16* out, std::int64_t n, int device);

  static const ConvertKernels cpu;   // core/cpu/convert.cpp
  static const ConvertKernels cuda;  // core/cuda/convert.cu (CUDA builds only)
};

}  // namespace moegrad::core
