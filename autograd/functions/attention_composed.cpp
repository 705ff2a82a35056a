// TEMPORARY: causal_attention composed of existing differentiable ops (matmul, an additive causal
// mask, softmax, matmul), so the transformer (issue 17) builds and trains before the fused op
// lands. It keeps the [B, H, T, T] probabilities for backward; the fused op in
// autograd/functions/attention.cpp replaces it (the lead deletes this file on merge).
#include <limits>

#include "autograd/functions.h"
#include "core/error.h"
#include "core/ops/creation.h"

namespace moegrad::ag {

Variable causal_attention(const Variable& q, const Variable& k, const Variable& v, double scale) {
  MOEGRAD_CHECK(q.dim() == 4 && k.shape() == q.shape() && v.shape() == q.shape(), "causal_attention",
                "q, k, v must be [B, H, T, D] of one shape, got {}, {}, {}", core::describe(q.value()),
                core::describe(k.value()), core::describe(v.value()));
  const std::int64_t t = q.size(2);
  // mask [T, T]: 0 where s <= t, the lowest finite value above the diagonal (exp gives 0).
  std::vector<double> m(static_cast<std::size_t>(t * t), 0.0);
  for (std::int64_t i = 0; i < t; ++i)
    for (std::int64_t j = i + 1; j < t; ++j) m[static_cast<std::size_t>(i * t + j)] = -1e30;
  const Tensor mask = core::to_device(core::to_dtype(core::from_vector<double>(m, {t, t}), q.dtype()), q.device());
  Variable scores = add(mul(matmul(q, transpose(k, -2, -1)), scale), constant(mask));  // [B, H, T, T]
  return matmul(softmax(scores, -1), v);
}

}  // namespace moegrad::ag
