// The one MoE layer interface: st::MoE, lmoe::MoE and lmoe::HeirarchicalMoE all implement it,
// and the trainer's models, the examples and bench_moe use it.
//
//   MoEOutput r = layer.forward(x, {.noise_gates = true});   // x [b, n, d]
//   r.output [b, n, d]; r.aux_loss 0-d (weighted, what training adds to the loss);
//   r.balance_loss / r.router_z_loss unweighted (router_z_loss undefined where there is none)
//
// Expert parallelism: place_experts(group) spreads the layer's X experts over the P members of
// an expert-parallel group; member p keeps experts [p * X / P, (p + 1) * X / P) and drops the
// others' parameters. Routing stays local (each rank routes its own tokens); the pipeline
// (pipeline.h) sends each row to the rank that owns its expert and brings the result back.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "layers/module.h"
#include "layers/moe/pipeline.h"
#include "layers/moe/routing.h"
#include "layers/moe/token_routing.h"

namespace moegrad::nn::moe {

struct MoEForward {
  bool noise_gates = false;  // st-moe's gate noise (ignored by the lucidrains gates)
  double noise_mult = 1.0;
  Draws draws;               // injected random draws (tests); drawn from the generator otherwise
};

struct MoEOutput {
  Variable output;         // [b, n, d]
  Variable aux_loss;       // 0-d: the weighted auxiliary losses the layer adds to training
  Variable balance_loss;   // unweighted (HeirarchicalMoE: outer + inner)
  Variable router_z_loss;  // unweighted; undefined for the lucidrains layers
};

class MoELayer : public Module {
 public:
  virtual MoEOutput forward(const Variable& x, const MoEForward& f) = 0;
  MoEOutput forward(const Variable& x) { return forward(x, MoEForward{}); }
  // Statistics of the last forward (this rank's tokens), over all X experts.
  virtual const RoutingStats& last_routing_stats() const = 0;
  // Each token's experts and weights in every later forward (token_routing.h), read with
  // last_token_routing(); off by default, so a forward copies nothing to the host for it.
  void record_token_routing(bool on) {
    record_tokens_ = on;
    token_routing_ = {};
  }
  const TokenRouting& last_token_routing() const { return token_routing_; }
  // Expert row buffer: automatic = padded on a GPU in capacity mode, compact otherwise.
  void set_row_layout(RowLayout layout) { row_layout_ = layout; }
  RowLayout row_layout() const { return row_layout_; }

  virtual std::int64_t total_experts() const = 0;  // X: flat over every expert dim
  // Keeps this member's X / P experts (P = group->size() must divide X; else one line naming the
  // layer, X and P). Collective-free. Once per layer: the dropped experts are gone. A group of
  // one keeps every expert.
  virtual void place_experts(std::shared_ptr<dist::ProcessGroup> group);
  const ExpertPlacement& placement() const { return placement_; }
  // The parameters that hold experts, by name relative to this layer ("experts.w_in"): after
  // place_experts they are [count, ...] slices of the full [X, ...] (the expert dims flattened).
  virtual std::vector<std::string> expert_parameter_names() const = 0;
  // Rows this rank sent to other members of the expert-parallel group in the last forward (the
  // same rows come back): x d x element size = bytes each way. 0 without expert parallelism.
  std::int64_t last_exchanged_rows() const { return last_exchanged_rows_; }

 protected:
  // For messages: "st_moe.MoE", "lmoe.MoE", "lmoe.HeirarchicalMoE".
  virtual const char* op_name() const = 0;
  // Keeps experts [first, first + count) of the flat X (place_experts has checked the range).
  virtual void keep_experts(std::int64_t first, std::int64_t count) = 0;
  // Constructors call it: every expert local.
  void init_placement(std::int64_t total) { placement_ = {nullptr, total, 0, total}; }

  RowLayout row_layout_ = RowLayout::automatic;
  bool record_tokens_ = false;
  TokenRouting token_routing_;  // the last forward's, when record_tokens_
  ExpertPlacement placement_;
  std::int64_t last_exchanged_rows_ = 0;
};

// Every MoE layer under root (root included), with its dotted path ("" for root itself), in
// named_modules() order: what expert placement and gradient reduction walk.
std::vector<std::pair<std::string, std::shared_ptr<MoELayer>>> moe_layers(const std::shared_ptr<Module>& root);

}  // namespace moegrad::nn::moe
