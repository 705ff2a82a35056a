// What a gating module's forward produces, in two forms: the routing metadata and weights the
// MoE fast path consumes, and the dense dispatch / combine tensors of the seed API.
#pragma once
#include "layers/moe/routing.h"

namespace moegrad::nn::moe {

struct GateResult {
  Routing routing;         // discrete decisions (no gradient)
  Variable weights;        // [G * n, k] combine weight of each choice: normalised gate * kept
  Variable balance_loss;   // the originals' balance / auxiliary loss (unweighted)
  Variable router_z_loss;  // TopNGating only (undefined for Top2Gating)
  bool straight_through = false;  // whether the dispatch passes gradients to the weights
};

// The seed API: dispatch and combine [*lead, e, c] and the losses as the originals return them.
struct DenseGateOutput {
  Variable dispatch, combine, balance_loss, router_z_loss;
};

// dense dispatch / combine of r, reshaped to lead + [E, capacity].
DenseGateOutput densify(const GateResult& r, const core::Shape& lead);

}  // namespace moegrad::nn::moe
