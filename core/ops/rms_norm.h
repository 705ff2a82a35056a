// RMSNorm as st-moe-pytorch computes it, fused: y = F.normalize(x, dim=-1) * gamma * scale,
// i.e. (x / max(||x||, eps)) * gamma * scale with the norm over the last dim. Two passes forward
// (the norms, then y) and five backward (four for d x, one for d gamma), where the unfused graph
// took about fifteen.
#pragma once
#include <array>

#include "core/tensor.h"

namespace moegrad::core {

struct RmsNormForward {
  Tensor out;   // [..., D], x's shape
  Tensor norm;  // [..., 1]: ||x|| over the last dim, before the clamp (saved for backward)
};

// x [..., D] floating; gamma broadcast to x's shape; eps > 0.
RmsNormForward rms_norm(const Tensor& x, const Tensor& gamma, double scale, double eps);

// Gradients {d x [x's shape], d gamma at x's shape (autograd sums it to gamma's shape)} for the
// incoming gy [x's shape] and the forward's norm; only the needed ones are computed. Where the
// norm was clamped (||x|| < eps) the normaliser is the constant eps, as in PyTorch.
std::array<Tensor, 2> rms_norm_backward(const Tensor& gy, const Tensor& x, const Tensor& gamma, const Tensor& norm,
                                        double scale, double eps, bool need_x, bool need_gamma);

}  // namespace moegrad::core
