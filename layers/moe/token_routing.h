// Each token's routing in one forward, for people to inspect (`moegrad predict` writes it): which
// experts a token went to and with what weight. Recorded only when asked
// (MoELayer::record_token_routing), so the training path copies nothing to the host for it.
//
// For a layer input [b, n, d] and k choices per token, host tensors [b, n, k]:
//   experts  i64: the expert of each choice, a flat id in [0, X); -1 where the gate routed no
//            expert (lucidrains' second-choice policy or threshold, st_moe's threshold)
//   weights  f32: the weight the layer gives that expert's output in the token's result (the
//            normalised gate value; 0 when the choice was dropped or not routed)
//   dropped  u8:  1 where the gate chose an expert but it was full (capacity), so the choice
//            did not count
// st_moe.MoE: k = top_n, choice j is the j-th largest gate value. lmoe.MoE: k = 2 (top-1, top-2).
// lmoe.HeirarchicalMoE: k = 4, choice 2 j + i is inner choice i of outer choice j; its expert is
// the flat id outer * inner_count + inner and its weight outer weight x inner weight (what
// multiplies that expert's output); an outer choice that was dropped or not routed gives -1
// for both of its inner choices (dropped set for both when it was dropped).
#pragma once
#include "layers/moe/routing.h"

namespace moegrad::nn::moe {

struct TokenRouting {
  Tensor experts, weights, dropped;
  bool defined() const { return experts.defined(); }
};

// One gate's routing r (groups of n tokens, outer = 1) with its combine weights [G * n, k]:
// [b, n, k] with b * n = G * n tokens.
TokenRouting token_routing(const Routing& r, const Tensor& weights, std::int64_t b, std::int64_t n);

// HeirarchicalMoE: the outer gate's routing and weights over [b, n] tokens, the padded rows its
// kept choices took (RowMap::row, [b * n, 2]), and the inner gate's routing and weights over
// those rows ([rows, 2], experts local to each outer expert).
TokenRouting hierarchical_token_routing(const Routing& outer, const Tensor& outer_weights, const Tensor& outer_rows,
                                        const Routing& inner, const Tensor& inner_weights, std::int64_t b,
                                        std::int64_t n);

}  // namespace moegrad::nn::moe
