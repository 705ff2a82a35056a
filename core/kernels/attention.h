// The causal attention kernels, declared once for every backend (core/cpu/attention.cpp,
// core/cuda/attention.cu; reached through backend<AttentionKernels>, core/backend.h). The ops
// layer (core/ops/attention.cpp) validates shapes, dtypes and devices and hands over q, k, v and
// grad_out [B, H, T, D] whose rows are unit-stride (HeadLayout below: any strides over B, H and
// T, so the model's permuted [B, T, H, D] projections need no copy), and a contiguous out, lse
// [B, H, T] and contiguous outputs, written whole. The scalar softmax math both devices use is
// core/kernels/attention_math.h; the devices sum in other orders, so results agree to rounding.
#pragma once
#include <cstdint>

#include "core/kernels/scalar_math_base.h"
#include "core/tensor.h"

namespace moegrad::core {

// Where head i = b H + h of a [B, H, T, D] operand starts and how far apart its rows are, in
// elements from data<T>(); a row's D values are adjacent. Contiguous: head i at i T D, rows D
// apart; a [B, T, H, D] tensor permuted to [B, H, T, D]: head at b T H D + h D, rows H D apart.
struct HeadLayout {
  std::int64_t heads_per_batch = 1, batch_stride = 0, head_stride = 0, row_stride = 0;
  MOEGRAD_HD std::int64_t head(std::int64_t i) const {
    return (i / heads_per_batch) * batch_stride + (i % heads_per_batch) * head_stride;
  }
};
// t's layout; the ops layer passes only tensors with stride 1 along D (or D = 1) and rows at
// least D apart (or T = 1), so a row is a BLAS operand row with leading dim row_stride >= D.
inline HeadLayout head_layout(const Tensor& t) {
  return {t.size(1), t.stride(0), t.stride(1), t.size(2) > 1 ? t.stride(2) : t.size(3)};
}
// Whether the kernels take t as it is (see head_layout).
inline bool rows_unit_stride(const Tensor& t) {
  return (t.size(3) <= 1 || t.stride(3) == 1) && (t.size(2) <= 1 || t.stride(2) >= t.size(3));
}

struct AttentionKernels {
  // out[b,h,t] = sum_{s <= t} softmax_s(scale q_t . k_s) v_s; lse[b,h,t] = log sum_{s <= t}
  // exp(scale q_t . k_s). Blocked over query rows: never a [T, T] matrix per (b, h).
  void (*forward)(const Tensor& q, const Tensor& k, const Tensor& v, double scale, const Tensor& out,
                  const Tensor& lse);
  // The gradients from the forward's out and lse, the probabilities recomputed block by block:
  // dV = P^T dO, dP = dO V^T, D = rowsum(dO * O), dS = P (dP - D), dQ = scale dS K,
  // dK = scale dS^T Q. Deterministic: the same inputs give the same bits whatever the thread count.
  void (*backward)(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& out, const Tensor& lse,
                   const Tensor& grad_out, double scale, const Tensor& dq, const Tensor& dk, const Tensor& dv);

  static const AttentionKernels cpu;   // core/cpu/attention.cpp
  static const AttentionKernels cuda;  // core/cuda/attention.cu (CUDA builds only)
};

}  // namespace moegrad::core
