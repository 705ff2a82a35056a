// f32 <-> bf16, written once for the CPU loops and the CUDA kernels (copy_ / to_dtype run these
// functors through run_map). f32 -> bf16 rounds to nearest, ties to even, on the bit pattern:
// add 0x7fff plus the lowest kept bit, keep the high 16 bits. That one rule also rounds
// subnormals correctly, carries a mantissa overflow into the exponent and takes values above
// bf16's largest finite (0x7f7f) by more than half an ulp to inf. NaN stays a quiet NaN of the
// same sign (the carry could otherwise turn a signalling NaN with low payload into inf).
#pragma once
#include <cstdint>
#include <cstring>

#include "core/dtype.h"
#include "core/kernels/scalar_math_base.h"

namespace moegrad::core::math {

// The bit pattern of an f32 and back (the device's intrinsics in CUDA code).
MOEGRAD_HD std::uint32_t f32_bits(float f) {
#ifdef __CUDA_ARCH__
  return __float_as_uint(f);
#else
  std::uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  return u;
#endif
}
MOEGRAD_HD float f32_from_bits(std::uint32_t u) {
#ifdef __CUDA_ARCH__
  return __uint_as_float(u);
#else
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
#endif
}

MOEGRAD_HD std::uint16_t bf16_bits_rne(float f) {
  std::uint32_t u = f32_bits(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<std::uint16_t>((u >> 16) | 0x0040u);  // quiet NaN
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<std::uint16_t>(u >> 16);
}

MOEGRAD_HD float bf16_bits_to_float(std::uint16_t bits) { return f32_from_bits(static_cast<std::uint32_t>(bits) << 16); }

struct ToBf16 {
  MOEGRAD_HD Bf16 operator()(float x) const { return Bf16{bf16_bits_rne(x)}; }
};
struct FromBf16 {
  MOEGRAD_HD float operator()(Bf16 x) const { return bf16_bits_to_float(x.bits); }
};
struct CopyBf16 {  // bf16 -> bf16 (contiguous, clone of a view)
  MOEGRAD_HD Bf16 operator()(Bf16 x) const { return x; }
};

}  // namespace moegrad::core::math
