#include "layers/moe/token_routing.h"

#include "core/error.h"
#include "core/ops/creation.h"

namespace moegrad::nn::moe {

namespace {
using core::DType;

// A host contiguous copy of t in dtype.
Tensor host(const Tensor& t, DType dtype) {
  return core::contiguous(core::to_dtype(core::to_device(t, core::Device::cpu()), dtype));
}

// Per choice of a flat routing: its expert (-1 not routed), weight and dropped flag, on the host.
struct Choices {
  Tensor expert, position, weight;
  const std::int64_t* e;
  const std::int64_t* pos;
  const float* w;
  std::int64_t k, capacity;
  Choices(const Routing& r, const Tensor& weights)
      : expert(host(r.expert, DType::i64)), position(host(r.position, DType::i64)), weight(host(weights, DType::f32)),
        e(expert.data<std::int64_t>()), pos(position.data<std::int64_t>()), w(weight.data<float>()), k(r.top_k),
        capacity(r.capacity) {}
  bool routed(std::int64_t i) const { return pos[i] >= 0; }
  bool kept(std::int64_t i) const { return pos[i] >= 0 && pos[i] < capacity; }
};
}  // namespace

TokenRouting token_routing(const Routing& r, const Tensor& weights, std::int64_t b, std::int64_t n) {
  MOEGRAD_CHECK(r.outer == 1 && r.tokens() == b * n, "token_routing", "routing of {} tokens (outer {}) for [{}, {}]",
                r.tokens(), r.outer, b, n);
  const Choices c(r, weights);
  TokenRouting out{core::empty({b, n, r.top_k}, {DType::i64}), core::empty({b, n, r.top_k}),
                   core::empty({b, n, r.top_k}, {DType::u8})};
  auto* e = out.experts.data<std::int64_t>();
  auto* w = out.weights.data<float>();
  auto* d = out.dropped.data<std::uint8_t>();
  for (std::int64_t i = 0; i < r.tokens() * r.top_k; ++i) {
    e[i] = c.routed(i) ? c.e[i] : -1;
    w[i] = c.kept(i) ? c.w[i] : 0.0f;
    d[i] = c.routed(i) && !c.kept(i);
  }
  return out;
}

TokenRouting hierarchical_token_routing(const Routing& outer, const Tensor& outer_weights, const Tensor& outer_rows,
                                        const Routing& inner, const Tensor& inner_weights, std::int64_t b,
                                        std::int64_t n) {
  MOEGRAD_CHECK(outer.outer == 1 && outer.tokens() == b * n, "token_routing",
                "outer routing of {} tokens for [{}, {}]", outer.tokens(), b, n);
  const Choices o(outer, outer_weights), in(inner, inner_weights);
  const Tensor rows = host(outer_rows, DType::i64);
  const std::int64_t* row = rows.data<std::int64_t>();
  const std::int64_t ko = outer.top_k, ki = inner.top_k, k = ko * ki;
  TokenRouting out{core::empty({b, n, k}, {DType::i64}), core::empty({b, n, k}), core::empty({b, n, k}, {DType::u8})};
  auto* e = out.experts.data<std::int64_t>();
  auto* w = out.weights.data<float>();
  auto* d = out.dropped.data<std::uint8_t>();
  for (std::int64_t t = 0; t < b * n; ++t)
    for (std::int64_t j = 0; j < ko; ++j) {
      const std::int64_t oc = t * ko + j;  // the outer choice
      for (std::int64_t i = 0; i < ki; ++i) {
        const std::int64_t at = t * k + j * ki + i;
        e[at] = -1;
        w[at] = 0.0f;
        d[at] = o.routed(oc) && !o.kept(oc);
        if (!o.kept(oc)) continue;
        const std::int64_t r = row[oc], ic = r * ki + i;  // the slot's row in the inner routing, its choice i
        MOEGRAD_CHECK(r >= 0 && r < inner.tokens(), "token_routing", "outer row {} outside the inner routing's {} rows",
                      r, inner.tokens());
        if (!in.routed(ic)) continue;
        e[at] = inner.global_expert(r / inner.group_size, in.e[ic]);
        w[at] = in.kept(ic) ? o.w[oc] * in.w[ic] : 0.0f;
        d[at] = !in.kept(ic);
      }
    }
  return out;
}

}  // namespace moegrad::nn::moe
