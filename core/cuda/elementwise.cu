// The elementwise kernels the ops instantiate: every (Out, In..., functor) that core/ops/
// elementwise.cpp and core/ops/creation.cpp pass to run_map. A combination missing here is a
// link error in the CUDA build, never a silent CPU fallback.
#include <cstdint>

#include "core/cuda/loops.cuh"
#include "core/kernels/bf16_math.h"
#include "core/kernels/scalar_math.h"

namespace moegrad::core::cuda {

using std::int64_t;
using std::uint8_t;
using A1 = std::array<Tensor, 1>;
using A2 = std::array<Tensor, 2>;
using A3 = std::array<Tensor, 3>;
using A4 = std::array<Tensor, 4>;

// out = f(x), T -> T
#define MOEGRAD_UNARY(F, T) template void map<T, T>(const Tensor&, const A1&, F);
#define MOEGRAD_UNARY_FLOATING(F) MOEGRAD_UNARY(F, float) MOEGRAD_UNARY(F, double)
#define MOEGRAD_UNARY_NUMERIC(F) MOEGRAD_UNARY_FLOATING(F) MOEGRAD_UNARY(F, int64_t)
// out = f(a, b), (T, T) -> Out
#define MOEGRAD_BINARY(F, Out, T) template void map<Out, T, T>(const Tensor&, const A2&, F);
#define MOEGRAD_BINARY_FLOATING(F) MOEGRAD_BINARY(F, float, float) MOEGRAD_BINARY(F, double, double)
#define MOEGRAD_BINARY_NUMERIC(F) MOEGRAD_BINARY_FLOATING(F) MOEGRAD_BINARY(F, int64_t, int64_t)
#define MOEGRAD_PREDICATE_NUMERIC(F) \
  MOEGRAD_BINARY(F, bool, float) MOEGRAD_BINARY(F, bool, double) MOEGRAD_BINARY(F, bool, int64_t)
#define MOEGRAD_PREDICATE_ANY(F) \
  MOEGRAD_PREDICATE_NUMERIC(F) MOEGRAD_BINARY(F, bool, bool) MOEGRAD_BINARY(F, bool, uint8_t)

MOEGRAD_UNARY_FLOATING(math::Exp)
MOEGRAD_UNARY_FLOATING(math::Log)
MOEGRAD_UNARY_FLOATING(math::Sqrt)
MOEGRAD_UNARY_FLOATING(math::Rsqrt)
MOEGRAD_UNARY_FLOATING(math::Tanh)
MOEGRAD_UNARY_FLOATING(math::Sigmoid)
MOEGRAD_UNARY_FLOATING(math::LeakyRelu)
MOEGRAD_UNARY_FLOATING(math::Gelu)
MOEGRAD_UNARY_FLOATING(math::GeluTanh)
MOEGRAD_UNARY_FLOATING(math::Silu)
MOEGRAD_UNARY_FLOATING(math::Clamp)
MOEGRAD_UNARY_NUMERIC(math::Neg)
MOEGRAD_UNARY_NUMERIC(math::Abs)
MOEGRAD_UNARY_NUMERIC(math::Sign)
MOEGRAD_UNARY_NUMERIC(math::Square)
MOEGRAD_UNARY_NUMERIC(math::Relu)
MOEGRAD_UNARY_NUMERIC(math::Scale)  // mul_
MOEGRAD_UNARY(math::LogicalNot, bool)
template void map<bool, float>(const Tensor&, const A1&, math::IsFinite);
template void map<bool, double>(const Tensor&, const A1&, math::IsFinite);
template void map<bool, int64_t>(const Tensor&, const A1&, math::IsFinite);

MOEGRAD_BINARY_NUMERIC(math::Add)
MOEGRAD_BINARY_NUMERIC(math::Sub)
MOEGRAD_BINARY_NUMERIC(math::Mul)
MOEGRAD_BINARY_NUMERIC(math::Maximum)
MOEGRAD_BINARY_NUMERIC(math::Minimum)
MOEGRAD_BINARY_NUMERIC(math::AddScaled)  // add_ with alpha
MOEGRAD_BINARY_FLOATING(math::Div)
MOEGRAD_BINARY_FLOATING(math::Pow)
MOEGRAD_BINARY_FLOATING(math::GeluBackward)
MOEGRAD_BINARY_FLOATING(math::GeluTanhBackward)
MOEGRAD_BINARY_FLOATING(math::SiluBackward)
MOEGRAD_BINARY_FLOATING(math::LeakyReluBackward)
MOEGRAD_PREDICATE_NUMERIC(math::Lt)
MOEGRAD_PREDICATE_NUMERIC(math::Le)
MOEGRAD_PREDICATE_NUMERIC(math::Gt)
MOEGRAD_PREDICATE_NUMERIC(math::Ge)
MOEGRAD_PREDICATE_ANY(math::Eq)
MOEGRAD_PREDICATE_ANY(math::Ne)
MOEGRAD_BINARY(math::LogicalAnd, bool, bool)
MOEGRAD_BINARY(math::LogicalOr, bool, bool)

// where(cond, a, b)
// Fused GEGLU (core::geglu) and its gradients.
#define MOEGRAD_GEGLU(T)                                                                                 \
  template void map<T, T, T, T>(const Tensor&, const A3&, math::GegluMul);                               \
  template void map_outputs<T, 3, T, T, T, T>(const std::array<Tensor, 3>&, const A4&, math::GegluGrads); \
  template void map_outputs<T, 2, T, T, T, T>(const std::array<Tensor, 2>&, const A4&, math::GegluGradsInput); \
  template void map<T, T, T, T, T>(const Tensor&, const A4&, math::GegluGradMult);
MOEGRAD_GEGLU(float)
MOEGRAD_GEGLU(double)

// RMSNorm (core/ops/rms_norm.cpp) and the rotary embedding (core/ops/rotary.cpp).
#define MOEGRAD_TRANSFORMER(T)                                                                           \
  template void map<T, T, T, T>(const Tensor&, const A3&, math::NormalizeScale);                         \
  template void map<T, T, T, T, T>(const Tensor&, const A4&, math::MulSubMul);                           \
  template void map_outputs<T, 2, T, T, T, T>(const std::array<Tensor, 2>&, const A4&, math::Rotary);    \
  template void map_outputs<T, 2, T, T, T, T>(const std::array<Tensor, 2>&, const A4&, math::RotaryInverse);
MOEGRAD_TRANSFORMER(float)
MOEGRAD_TRANSFORMER(double)

#define MOEGRAD_SELECT(T) template void map<T, bool, T, T>(const Tensor&, const A3&, math::Select);
MOEGRAD_SELECT(float)
MOEGRAD_SELECT(double)
MOEGRAD_SELECT(int64_t)
MOEGRAD_SELECT(bool)
MOEGRAD_SELECT(uint8_t)

// copy_ between any two dtypes, and fill_.
#define MOEGRAD_CAST(D, S) template void map<D, S>(const Tensor&, const A1&, math::Cast<D>);
#define MOEGRAD_CAST_FROM_ALL(D) \
  MOEGRAD_CAST(D, float) MOEGRAD_CAST(D, double) MOEGRAD_CAST(D, int64_t) MOEGRAD_CAST(D, bool) MOEGRAD_CAST(D, uint8_t)
MOEGRAD_CAST_FROM_ALL(float)
MOEGRAD_CAST_FROM_ALL(double)
MOEGRAD_CAST_FROM_ALL(int64_t)
MOEGRAD_CAST_FROM_ALL(bool)
MOEGRAD_CAST_FROM_ALL(uint8_t)
#define MOEGRAD_FILL(T) \
  template void map<T>(const Tensor&, const std::array<Tensor, 0>&, math::Constant<T>);
MOEGRAD_FILL(float)
MOEGRAD_FILL(double)
MOEGRAD_FILL(int64_t)
MOEGRAD_FILL(bool)
MOEGRAD_FILL(uint8_t)

// bf16 conversions (copy_): f32 -> bf16 (round to nearest even), bf16 -> f32, bf16 -> bf16.
template void map<Bf16, float>(const Tensor&, const A1&, math::ToBf16);
template void map<float, Bf16>(const Tensor&, const A1&, math::FromBf16);
template void map<Bf16, Bf16>(const Tensor&, const A1&, math::CopyBf16);

}  // namespace moegrad::core::cuda
