#include "layers/moe/gate_result.h"

#include "autograd/functions.h"

namespace moegrad::nn::moe {

DenseGateOutput densify(const GateResult& r, const core::Shape& lead) {
  core::Shape shape = lead;
  shape.insert(shape.end(), {r.routing.num_experts, r.routing.capacity});
  Variable combine = ag::reshape(dense_combine(r.routing, r.weights), shape);
  return {dense_dispatch(combine, r.straight_through), combine, r.balance_loss, r.router_z_loss};
}

}  // namespace moegrad::nn::moe
