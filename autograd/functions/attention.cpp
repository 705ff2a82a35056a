// Causal scaled-dot-product attention, fused (core/ops/attention.h). The forward saves q, k, v,
// out and the rows' log-sum-exp [B, H, T]; the backward recomputes the probabilities from them
// block by block (flash-attention style), so no [B, H, T, T] tensor is kept between the two:
//   dV = P^T dO, dP = dO V^T, D = rowsum(dO * O), dS = P (dP - D), dQ = scale dS K, dK = scale dS^T Q.
#include "autograd/functions.h"
#include "autograd/node.h"
#include "autograd/registry.h"
#include "core/ops/attention.h"
#include "core/ops/rotary.h"

namespace moegrad::ag {

MOEGRAD_DIFFERENTIABLE("causal_attention", "rotary");

Variable causal_attention(const Variable& q, const Variable& k, const Variable& v, double scale) {
  MOEGRAD_CHECK(q.defined() && k.defined() && v.defined(), "causal_attention", "q, k and v must be defined");
  core::AttentionForward f = core::causal_attention_forward(q.value(), k.value(), v.value(), scale);
  return record("causal_attention", f.out, {q, k, v},
                [Q = q.value(), K = k.value(), V = v.value(), O = f.out, L = f.lse, scale](Tensor g, const Needs&) {
                  core::AttentionGrads d = core::causal_attention_backward(Q, K, V, O, L, g, scale);
                  return Grads{d.dq, d.dk, d.dv};
                });
}

// The gradient is the transposed map, dx = rotary(g, cos, sin, inverse) (for true angles the
// rotation back).
Variable rotary(const Variable& x, const Tensor& cos, const Tensor& sin) {
  MOEGRAD_CHECK(x.defined(), "rotary", "x must be defined");
  return record("rotary", core::rotary(x.value(), cos, sin), {x}, [cos, sin](Tensor g, const Needs&) {
    return Grads{core::rotary(g, cos, sin, /*inverse=*/true)};
  });
}

}  // namespace moegrad::ag
