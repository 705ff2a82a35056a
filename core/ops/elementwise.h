// Elementwise ops with NumPy broadcasting. Binary ops need equal dtypes (no silent promotion).
#pragma once
#include <array>
#include "core/tensor.h"

namespace moegrad::core {

Tensor add(const Tensor& a, const Tensor& b);
Tensor sub(const Tensor& a, const Tensor& b);
Tensor mul(const Tensor& a, const Tensor& b);
Tensor div(const Tensor& a, const Tensor& b);
Tensor pow(const Tensor& a, const Tensor& b);
Tensor maximum(const Tensor& a, const Tensor& b);
Tensor minimum(const Tensor& a, const Tensor& b);
// Scalar right-hand sides, in a's dtype.
Tensor add(const Tensor& a, double b);
Tensor sub(const Tensor& a, double b);
Tensor mul(const Tensor& a, double b);
Tensor div(const Tensor& a, double b);
Tensor pow(const Tensor& a, double exponent);
Tensor rsub(const Tensor& a, double b);  // b - a

Tensor neg(const Tensor& x);
Tensor exp(const Tensor& x);
Tensor log(const Tensor& x);
Tensor sqrt(const Tensor& x);
Tensor rsqrt(const Tensor& x);
Tensor abs(const Tensor& x);
Tensor sign(const Tensor& x);
Tensor square(const Tensor& x);
Tensor tanh(const Tensor& x);
Tensor sigmoid(const Tensor& x);
Tensor relu(const Tensor& x);
Tensor leaky_relu(const Tensor& x, double negative_slope = 0.01);
Tensor gelu(const Tensor& x);       // exact: x * Phi(x)
Tensor gelu_tanh(const Tensor& x);  // tanh approximation
Tensor silu(const Tensor& x);
// Clamp to [lo, hi]; pass -inf / +inf for a one-sided clamp.
Tensor clamp(const Tensor& x, double lo, double hi);

// Derivatives used by autograd (dy/dx evaluated at x, times gy). `out`, when given, receives
// the result (x's shape and dtype, contiguous) and may be gy itself: autograd computes a
// gradient in the incoming one's buffer when nothing else holds it.
Tensor gelu_backward(const Tensor& gy, const Tensor& x, const Tensor& out = {});
Tensor gelu_tanh_backward(const Tensor& gy, const Tensor& x, const Tensor& out = {});

// Fused GEGLU with a multiplier: h [..., 2H] holds the value (first half) and the gate (second
// half), as st-moe's GEGLU chunks it; out [..., H] = (gelu(gate) * value) * mult in one pass,
// mult broadcast to [..., H].
Tensor geglu(const Tensor& h, const Tensor& mult);
// Its gradients: {d h [..., 2H], d mult at the broadcast shape [..., H]} from one pass; only
// the needed ones are computed (the others are undefined); gelu is recomputed, not saved.
// dh_out / dmult_out, when given, receive them (contiguous, of those shapes and h's dtype) and
// may be h and gy themselves: autograd writes the gradients over the saved pre-activation and
// the incoming gradient when nothing else holds them.
std::array<Tensor, 2> geglu_backward(const Tensor& gy, const Tensor& h, const Tensor& mult, bool need_h,
                                     bool need_mult, const Tensor& dh_out = {}, const Tensor& dmult_out = {});
Tensor silu_backward(const Tensor& gy, const Tensor& x, const Tensor& out = {});
Tensor leaky_relu_backward(const Tensor& gy, const Tensor& x, double negative_slope, const Tensor& out = {});

// cond is b8; a and b broadcast with cond.
Tensor where(const Tensor& cond, const Tensor& a, const Tensor& b);

// Comparisons give b8.
Tensor lt(const Tensor& a, const Tensor& b);
Tensor le(const Tensor& a, const Tensor& b);
Tensor gt(const Tensor& a, const Tensor& b);
Tensor ge(const Tensor& a, const Tensor& b);
Tensor eq(const Tensor& a, const Tensor& b);
Tensor ne(const Tensor& a, const Tensor& b);
Tensor lt(const Tensor& a, double b);
Tensor le(const Tensor& a, double b);
Tensor gt(const Tensor& a, double b);
Tensor ge(const Tensor& a, double b);
Tensor eq(const Tensor& a, double b);
Tensor ne(const Tensor& a, double b);
// Logical ops on b8.
Tensor logical_and(const Tensor& a, const Tensor& b);
Tensor logical_or(const Tensor& a, const Tensor& b);
Tensor logical_not(const Tensor& a);
Tensor isfinite(const Tensor& x);  // b8

// In place on dst (must be contiguous or at least non-overlapping): dst += alpha * src.
void add_(const Tensor& dst, const Tensor& src, double alpha = 1.0);
void mul_(const Tensor& dst, double value);

}  // namespace moegrad::core
