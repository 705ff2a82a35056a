// A vectorisable exp, the one used by every CPU kernel (elementwise exp, sigmoid, softmax,
// logsumexp), and a vectorisable erf for GELU. On the GPU, fast_exp / fast_erf are the
// device's own functions; doubles always use the standard library.
#pragma once
#include <bit>
#include <cmath>
#include <cstdint>

#include "core/kernels/scalar_math_base.h"

namespace moegrad::core::math {

// exp for float without calls or branches, so the loops around it vectorise: Cephes'
// range reduction and polynomial (about 1 ulp). Results under 2^-149 are 0, over FLT_MAX inf;
// NaN stays NaN. Range tests and selects work on bit patterns with integer masks: with float
// comparisons or selects, GCC sinks the polynomial into a branch and, under -ftrapping-math,
// will not if-convert (and so not vectorise) the loop. Doubles use std::exp.
inline float blend_bits(std::uint32_t mask, float a, float b) {  // mask ? a : b, bitwise
  return std::bit_cast<float>((mask & std::bit_cast<std::uint32_t>(a)) |
                              (~mask & std::bit_cast<std::uint32_t>(b)));
}
inline float exp_f32(float x) {
  constexpr std::uint32_t kLow = std::bit_cast<std::uint32_t>(-104.0f);  // exp underflows
  constexpr std::int32_t kHigh = std::bit_cast<std::int32_t>(89.0f);     // exp overflows
  const std::uint32_t ux = std::bit_cast<std::uint32_t>(x);
  // Negative floats order by magnitude as unsigned: x < -104 (or a NaN with the sign bit).
  const std::uint32_t under = 0u - static_cast<std::uint32_t>(ux > kLow);
  // x > 89, +inf or +NaN.
  const std::uint32_t over = 0u - static_cast<std::uint32_t>(static_cast<std::int32_t>(ux) > kHigh);
  const std::uint32_t nan = 0u - static_cast<std::uint32_t>((ux & 0x7fffffffu) > 0x7f800000u);
  const float xc = blend_bits(under, -104.0f, blend_bits(over, 89.0f, x));
  const float t = xc * 1.44269504088896341f + 12582912.0f;  // 1.5 * 2^23: round to integer
  const float n = t - 12582912.0f;
  const std::int32_t ni = std::bit_cast<std::int32_t>(t) - 0x4B400000;
  float r = xc - n * 0.693359375f;
  r = r + n * 2.12194440e-4f;
  float q = 1.9875691500e-4f;
  q = q * r + 1.3981999507e-3f;
  q = q * r + 8.3334519073e-3f;
  q = q * r + 4.1665795894e-2f;
  q = q * r + 1.6666665459e-1f;
  q = q * r + 5.0000001201e-1f;
  q = q * r * r + r + 1.0f;
  // 2^n as two normal factors, so that subnormal results and overflow to inf come out right.
  const std::int32_t h = ni >> 1;
  const float s1 = std::bit_cast<float>((h + 127) << 23);
  const float s2 = std::bit_cast<float>((ni - h + 127) << 23);
  const float y = q * s1 * s2;
  return blend_bits(nan, x, blend_bits(under, 0.0f, y));
}

// erf for float without calls or branches: the rational approximation Eigen and XLA use
// (odd degree-13 numerator over even degree-8 denominator on [-4, 4]; erf is +-1 in float
// beyond), at most 4.2e-7 from the exact value. Clamping and NaN use bit masks, as above.
inline float erf_f32(float x) {
  constexpr std::uint32_t kFour = std::bit_cast<std::uint32_t>(4.0f);
  const std::uint32_t ux = std::bit_cast<std::uint32_t>(x);
  const std::uint32_t ax = ux & 0x7fffffffu;
  const std::uint32_t over = 0u - static_cast<std::uint32_t>(ax > kFour);       // |x| > 4, inf, NaN
  const std::uint32_t nan = 0u - static_cast<std::uint32_t>(ax > 0x7f800000u);
  const float xc = blend_bits(over, std::bit_cast<float>(kFour | (ux & 0x80000000u)), x);
  const float x2 = xc * xc;
  float p = x2 * -2.72614225801306e-10f + 2.77068142495902e-08f;
  p = p * x2 - 2.10102402082508e-06f;
  p = p * x2 - 5.69250639462346e-05f;
  p = p * x2 - 7.34990630326855e-04f;
  p = p * x2 - 2.95459980854025e-03f;
  p = p * x2 - 1.60960333262415e-02f;
  p = p * xc;
  float q = x2 * -1.45660718464996e-05f - 2.13374055278905e-04f;
  q = q * x2 - 1.68282697438203e-03f;
  q = q * x2 - 7.37332916720468e-03f;
  q = q * x2 - 1.42647390514189e-02f;
  return blend_bits(nan, x, p / q);
}

template <class T> MOEGRAD_HD T fast_erf(T x) {
#ifdef __CUDA_ARCH__
  return erf(x);
#else
  if constexpr (std::is_same_v<T, float>) return erf_f32(x);
  else return std::erf(x);
#endif
}

template <class T> MOEGRAD_HD T fast_exp(T x) {
#ifdef __CUDA_ARCH__
  return exp(x);
#else
  if constexpr (std::is_same_v<T, float>) return exp_f32(x);
  else return std::exp(x);
#endif
}

}  // namespace moegrad::core::math
