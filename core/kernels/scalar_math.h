// Scalar math written once, shared by the CPU loops and the CUDA kernels.
// Each functor is the whole definition of an elementwise op or its derivative.
#pragma once
#include <cmath>
#include <cstdint>
#include <type_traits>

#include "core/kernels/fast_exp.h"
#include "core/kernels/scalar_math_base.h"

namespace moegrad::core::math {

constexpr double kSqrt1_2 = 0.70710678118654752440;    // 1/sqrt(2)
constexpr double kInvSqrt2Pi = 0.39894228040143267794;  // 1/sqrt(2*pi)
constexpr double kSqrt2OverPi = 0.79788456080286535588;
constexpr double kGeluTanhCoef = 0.044715;

// ---- binary -----------------------------------------------------------------------------
struct Add { template <class T> MOEGRAD_HD T operator()(T a, T b) const { return a + b; } };
struct Sub { template <class T> MOEGRAD_HD T operator()(T a, T b) const { return a - b; } };
struct Mul { template <class T> MOEGRAD_HD T operator()(T a, T b) const { return a * b; } };
struct Div { template <class T> MOEGRAD_HD T operator()(T a, T b) const { return a / b; } };
struct Pow { template <class T> MOEGRAD_HD T operator()(T a, T b) const { return std::pow(a, b); } };
// NaN-propagating, like torch.maximum / torch.minimum.
struct Maximum {
  template <class T> MOEGRAD_HD T operator()(T a, T b) const { return (a != a || a > b) ? a : (b != b ? b : (a < b ? b : a)); }
};
struct Minimum {
  template <class T> MOEGRAD_HD T operator()(T a, T b) const { return (a != a || a < b) ? a : (b != b ? b : (a > b ? b : a)); }
};
struct Lt { template <class T> MOEGRAD_HD bool operator()(T a, T b) const { return a < b; } };
struct Le { template <class T> MOEGRAD_HD bool operator()(T a, T b) const { return a <= b; } };
struct Gt { template <class T> MOEGRAD_HD bool operator()(T a, T b) const { return a > b; } };
struct Ge { template <class T> MOEGRAD_HD bool operator()(T a, T b) const { return a >= b; } };
struct Eq { template <class T> MOEGRAD_HD bool operator()(T a, T b) const { return a == b; } };
struct Ne { template <class T> MOEGRAD_HD bool operator()(T a, T b) const { return a != b; } };
struct LogicalAnd { MOEGRAD_HD bool operator()(bool a, bool b) const { return a && b; } };
struct LogicalOr { MOEGRAD_HD bool operator()(bool a, bool b) const { return a || b; } };
// In-place updates: add_ with alpha, mul_ by a scalar.
struct AddScaled {
  double alpha;
  template <class T> MOEGRAD_HD T operator()(T d, T v) const { return d + T(alpha) * v; }
};
struct Scale {
  double factor;
  template <class T> MOEGRAD_HD T operator()(T d) const { return d * T(factor); }
};

// ---- selection, conversion, constants --------------------------------------------------------
struct Select { template <class T> MOEGRAD_HD T operator()(bool c, T a, T b) const { return c ? a : b; } };
template <class D> struct Cast { template <class S> MOEGRAD_HD D operator()(S v) const { return static_cast<D>(v); } };
template <class T> struct Constant {
  T value;
  MOEGRAD_HD T operator()() const { return value; }
};

// ---- unary ------------------------------------------------------------------------------
struct Neg { template <class T> MOEGRAD_HD T operator()(T x) const { return -x; } };
struct LogicalNot { MOEGRAD_HD bool operator()(bool x) const { return !x; } };
struct Exp { template <class T> MOEGRAD_HD T operator()(T x) const { return fast_exp(x); } };
struct Log { template <class T> MOEGRAD_HD T operator()(T x) const { return std::log(x); } };
struct Sqrt { template <class T> MOEGRAD_HD T operator()(T x) const { return std::sqrt(x); } };
struct Rsqrt { template <class T> MOEGRAD_HD T operator()(T x) const { return T(1) / std::sqrt(x); } };
struct Abs { template <class T> MOEGRAD_HD T operator()(T x) const { return x < T(0) ? -x : x; } };
struct Sign {
  template <class T> MOEGRAD_HD T operator()(T x) const { return T((x > T(0)) - (x < T(0))); }
};
struct Square { template <class T> MOEGRAD_HD T operator()(T x) const { return x * x; } };
struct Tanh { template <class T> MOEGRAD_HD T operator()(T x) const { return std::tanh(x); } };
struct Sigmoid {
  template <class T> MOEGRAD_HD T operator()(T x) const {
    // Stable on both tails: never exp of a large positive number.
    // 1/(1+e^-|x|) mirrored for x < 0: never exp of a large positive number, and no branch.
    const T e = fast_exp(-(x < T(0) ? -x : x));
    const T p = T(1) / (T(1) + e);
    return x >= T(0) ? p : e * p;  // e/(1+e) for x < 0
  }
};
struct Relu { template <class T> MOEGRAD_HD T operator()(T x) const { return x > T(0) ? x : (x != x ? x : T(0)); } };
struct LeakyRelu {
  double slope;
  template <class T> MOEGRAD_HD T operator()(T x) const { return x > T(0) ? x : x * T(slope); }
};
struct Gelu {  // x * Phi(x), Phi the standard normal CDF
  template <class T> MOEGRAD_HD T operator()(T x) const {
    return T(0.5) * x * (T(1) + fast_erf(x * T(kSqrt1_2)));
  }
};
struct GeluTanh {
  template <class T> MOEGRAD_HD T operator()(T x) const {
    const T inner = T(kSqrt2OverPi) * (x + T(kGeluTanhCoef) * x * x * x);
    return T(0.5) * x * (T(1) + std::tanh(inner));
  }
};
struct Silu { template <class T> MOEGRAD_HD T operator()(T x) const { return x * Sigmoid{}(x); } };
struct Clamp {
  double lo, hi;  // NaN passes through, like torch.clamp
  template <class T> MOEGRAD_HD T operator()(T x) const {
    return x < T(lo) ? T(lo) : (x > T(hi) ? T(hi) : x);
  }
};
struct IsFinite {
  template <class T> MOEGRAD_HD bool operator()(T x) const {
    if constexpr (std::is_floating_point_v<T>) return std::isfinite(x);
    else return true;
  }
};

// ---- derivatives: f(gy, x) = gy * dy/dx ----------------------------------------------------
struct GeluBackward {
  template <class T> MOEGRAD_HD T operator()(T gy, T x) const {
    const T cdf = T(0.5) * (T(1) + fast_erf(x * T(kSqrt1_2)));
    const T pdf = T(kInvSqrt2Pi) * fast_exp(T(-0.5) * x * x);
    return gy * (cdf + x * pdf);
  }
};
struct GeluTanhBackward {
  template <class T> MOEGRAD_HD T operator()(T gy, T x) const {
    const T inner = T(kSqrt2OverPi) * (x + T(kGeluTanhCoef) * x * x * x);
    const T th = std::tanh(inner);
    const T dinner = T(kSqrt2OverPi) * (T(1) + T(3 * kGeluTanhCoef) * x * x);
    return gy * (T(0.5) * (T(1) + th) + T(0.5) * x * (T(1) - th * th) * dinner);
  }
};
// GEGLU with a multiplier, (gelu(gate) * value) * mult (st-moe's experts), and its three input
// gradients, each in the order the unfused graph rounds it.
struct GegluMul {
  template <class T> MOEGRAD_HD T operator()(T value, T gate, T mult) const { return Gelu{}(gate) * value * mult; }
};
// GEGLU's gradients in one pass, Phi(gate) and its density computed once:
// {d value, d gate, d mult} = gy * {mult * gelu(gate), mult * value * gelu'(gate), value * gelu(gate)}.
struct GegluGrads {
  template <class T> MOEGRAD_HD Values<T, 3> operator()(T gy, T value, T gate, T mult) const {
    const T cdf = T(0.5) * (T(1) + fast_erf(gate * T(kSqrt1_2)));
    const T pdf = T(kInvSqrt2Pi) * fast_exp(T(-0.5) * gate * gate);
    const T gelu = gate * cdf;
    return {{gy * mult * gelu, gy * mult * value * (cdf + gate * pdf), gy * (gelu * value)}};
  }
};
// The same without d mult (the multiplier needs no gradient).
struct GegluGradsInput {
  template <class T> MOEGRAD_HD Values<T, 2> operator()(T gy, T value, T gate, T mult) const {
    const Values<T, 3> all = GegluGrads{}(gy, value, gate, mult);
    return {{all.v[0], all.v[1]}};
  }
};
struct GegluGradMult {
  template <class T> MOEGRAD_HD T operator()(T gy, T value, T gate, T) const { return gy * (Gelu{}(gate) * value); }
};
// RMSNorm (core/ops/rms_norm.h): ((x / n) * g) * scale, in the order st-moe's
// F.normalize(x) * gamma * scale rounds it; with g = the incoming gradient it is d gamma.
struct NormalizeScale {
  double scale;
  template <class T> MOEGRAD_HD T operator()(T x, T n, T g) const { return x / n * g * T(scale); }
};
// a * b - c * d (RMSNorm's d x = u * (s / n) - x * (s (x . u) / n^3)).
struct MulSubMul {
  template <class T> MOEGRAD_HD T operator()(T a, T b, T c, T d) const { return a * b - c * d; }
};
// The rotary embedding of a pair (x1, x2) by an angle with cosine c and sine s
// (core/ops/rotary.h), and its transpose (the rotation by -angle: the forward's gradient).
struct Rotary {
  template <class T> MOEGRAD_HD Values<T, 2> operator()(T x1, T x2, T c, T s) const {
    return {{x1 * c - x2 * s, x1 * s + x2 * c}};
  }
};
struct RotaryInverse {
  template <class T> MOEGRAD_HD Values<T, 2> operator()(T x1, T x2, T c, T s) const {
    return {{x1 * c + x2 * s, x2 * c - x1 * s}};
  }
};
struct SiluBackward {
  template <class T> MOEGRAD_HD T operator()(T gy, T x) const {
    const T s = Sigmoid{}(x);
    return gy * s * (T(1) + x * (T(1) - s));
  }
};
struct LeakyReluBackward {
  double slope;
  template <class T> MOEGRAD_HD T operator()(T gy, T x) const { return x > T(0) ? gy : gy * T(slope); }
};

}  // namespace moegrad::core::math
