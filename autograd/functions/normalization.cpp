// RMSNorm fused (core/ops/rms_norm.h). The forward saves x, gamma and the rows' norms [..., 1];
// the backward is d x = u s / n - x s (x . u) / n^3 with u = g * gamma (the second term only where
// the norm was not clamped to eps), and d gamma = g * x * s / n summed to gamma's shape.
#include "autograd/functions.h"
#include "autograd/node.h"
#include "autograd/registry.h"
#include "core/ops/rms_norm.h"

namespace moegrad::ag {

MOEGRAD_DIFFERENTIABLE("rms_norm");

Variable rms_norm(const Variable& x, const Variable& gamma, double scale, double eps) {
  MOEGRAD_CHECK(x.defined() && gamma.defined(), "rms_norm", "x and gamma must be defined");
  core::RmsNormForward f = core::rms_norm(x.value(), gamma.value(), scale, eps);
  return record("rms_norm", f.out, {x, gamma},
                [X = x.value(), G = gamma.value(), N = f.norm, scale, eps](Tensor g, const Needs& need) {
                  std::array<Tensor, 2> d = core::rms_norm_backward(g, X, G, N, scale, eps, need[0], need[1]);
                  return Grads{d[0], d[1]};
                });
}

}  // namespace moegrad::ag
