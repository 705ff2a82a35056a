// Causal scaled-dot-product attention, fused: q, k, v [B, H, T, D] of one floating dtype (f32 or
// f64) on one device. The forward returns the output and each row's log-sum-exp; the backward
// recomputes the probabilities from them block by block, so no [B, H, T, T] tensor exists
// between the two (autograd/functions/attention.cpp saves q, k, v, out and lse). The softmax
// runs in the operands' dtype (FP32 for f32). Strided q, k, v and grad_out are read in place when
// each row's D values are adjacent (e.g. [B, T, H, D] permuted to [B, H, T, D]), else copied.
// Kernels: AttentionKernels (core/kernels/attention.h), with one scalar core
// (core/kernels/attention_math.h).
#pragma once
#include "core/tensor.h"

namespace moegrad::core {

struct AttentionForward {
  Tensor out;  // [B, H, T, D]: out[t] = sum_{s <= t} softmax_s(scale q_t . k_s) v_s
  Tensor lse;  // [B, H, T]: log sum_{s <= t} exp(scale q_t . k_s)
};
// Throws "[causal_attention] ..." naming the shapes for operands that are not [B, H, T, D]
// alike, of another dtype, on different devices, or a scale that is not finite.
AttentionForward causal_attention_forward(const Tensor& q, const Tensor& k, const Tensor& v, double scale);

struct AttentionGrads {
  Tensor dq, dk, dv;  // [B, H, T, D] each
};
// The gradients given dO = grad_out [B, H, T, D] and the forward's out and lse.
AttentionGrads causal_attention_backward(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& out,
                                         const Tensor& lse, const Tensor& grad_out, double scale);

}  // namespace moegrad::core
