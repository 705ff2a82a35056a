// CUDA kernels for core/ops/attention.h, the twins of core/cpu/attention.h (same contracts; the
// same softmax math from core/attention_math.h, summed in another order, so results agree to
// rounding). The ops layer validates and hands over contiguous operands on one CUDA device and
// contiguous outputs (written whole). All work runs on cuda::stream(device), no synchronisation.
// Kernels: core/cuda/attention.cu; a CPU-only build has throwing stubs
// (core/cuda/stubs/attention_stubs.cpp).
#pragma once
#include "core/tensor.h"

namespace moegrad::core::cuda {

void causal_attention_forward(const Tensor& q, const Tensor& k, const Tensor& v, double scale,
                              const Tensor& out, const Tensor& lse);

void causal_attention_backward(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& out,
                               const Tensor& lse, const Tensor& grad_out, double scale, const Tensor& dq,
                               const Tensor& dk, const Tensor& dv);

}  // namespace moegrad::core::cuda
