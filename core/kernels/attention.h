// The causal attention kernels, declared once for every backend (core/cpu/attention.cpp,
// core/cuda/attention.cu; reached through backend<AttentionKernels>, core/backend.h). The ops
// layer (core/ops/attention.cpp) validates shapes, dtypes and devices and hands over contiguous
// q, k, v [B, H, T, D], a contiguous lse [B, H, T] and contiguous outputs, written whole. The
// scalar softmax math both devices use is core/kernels/attention_math.h; the devices sum in
// other orders, so results agree to rounding.
#pragma once
#include "core/tensor.h"

namespace moegrad::core {

struct AttentionKernels {
  // out[b,h,t] = sum_{s <= t} softmax_s(scale q_t . k_s) v_s; lse[b,h,t] = log sum_{s <= t}
  // exp(scale q_t . k_s). Blocked over query rows: never a [T, T] matrix per (b, h).
  void (*forward)(const Tensor& q, const Tensor& k, const Tensor& v, double scale, const Tensor& out,
                  const Tensor& lse);
  // The gradients from the forward's out and lse, the probabilities recomputed block by block:
  // dV = P^T dO, dP = dO V^T, D = rowsum(dO * O), dS = P (dP - D), dQ = scale dS K,
  // dK = scale dS^T Q.
  void (*backward)(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& out, const Tensor& lse,
                   const Tensor& grad_out, double scale, const Tensor& dq, const Tensor& dk, const Tensor& dv);

  static const AttentionKernels cpu;   // core/cpu/attention.cpp
  static const AttentionKernels cuda;  // core/cuda/attention.cu (CUDA builds only)
};

}  // namespace moegrad::core
