// CPU kernels for core/ops/attention.h (causal scaled-dot-product attention). The ops layer
// validates shapes, dtypes and devices and hands over contiguous [B, H, T, D] operands, a
// contiguous lse [B, H, T] and contiguous outputs (written whole). The scalar softmax math is
// core/attention_math.h, shared with the CUDA kernel.
#pragma once
#include "core/tensor.h"

namespace moegrad::core::cpu {

// out[b,h,t] = sum_{s <= t} softmax_s(scale q_t . k_s) v_s; lse[b,h,t] = log sum_{s <= t}
// exp(scale q_t . k_s). Blocked over query rows: one [rows, keys] score block per thread, never
// a [T, T] matrix per (b, h).
void causal_attention_forward(const Tensor& q, const Tensor& k, const Tensor& v, double scale,
                              const Tensor& out, const Tensor& lse);

// The gradients from the forward's out and lse, the probabilities recomputed block by block:
// dV = P^T dO, dP = dO V^T, D = rowsum(dO * O), dS = P (dP - D), dQ = scale dS K,
// dK = scale dS^T Q. dq, dk, dv are written whole.
void causal_attention_backward(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& out,
                               const Tensor& lse, const Tensor& grad_out, double scale, const Tensor& dq,
                               const Tensor& dk, const Tensor& dv);

}  // namespace moegrad::core::cpu
