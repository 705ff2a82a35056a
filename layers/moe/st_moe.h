// st-moe-pytorch's MoE and SparseMoEBlock (spec §3.3, §3.4) on the index-based fast path:
// TopNGating's routing -> rows gathered into an expert-major buffer (scaled by the dispatch
// value, straight-through when enabled) -> grouped GEMMs of the stacked experts -> weighted
// combine. No [b, n, e, c] tensor is built.
// Keys: gate.to_gates.weight, gate.threshold_train/_eval, experts.experts.<i>.net.{0,1,2}.*
#pragma once
#include <memory>

#include "layers/moe/st_experts.h"
#include "layers/moe/top_n_gating.h"
#include "layers/rms_norm.h"
#include "layers/st_expert.h"

namespace moegrad::nn::st {

struct MoEOptions {
  double expert_hidden_mult = 4.0;
  std::vector<double> threshold_train{0.2}, threshold_eval{0.2};
  double capacity_factor_train = 1.25, capacity_factor_eval = 2.0;
  std::int64_t gating_top_n = 2;
  double balance_loss_coef = 1e-2, router_z_loss_coef = 1e-3;
  bool straight_through_dispatch_tensor = true;
  bool differentiable_topk = false;
  bool differentiable_topk_fused = true;  // forwarded to the gate (the original drops it, §7 C4)
  double eps = 1e-9;                      // forwarded to the gate (likewise)
  std::int64_t min_expert_capacity = 4;
  bool dropless = false;                  // beyond the original: nothing is dropped
};

struct MoEOutput {
  Variable outputs;         // [b, n, d]
  Variable total_aux_loss;  // balance * balance_loss_coef + z * router_z_loss_coef
  Variable balance_loss, router_z_loss;  // 0-d in training, (1,) zeros in eval
};

class MoE : public Module {
 public:
  MoE(std::int64_t dim, std::int64_t num_experts = 16, MoEOptions opt = {}, TensorOptions options = {},
      core::Generator* gen = nullptr);
  MoEOutput forward(const Variable& x, bool noise_gates = false, double noise_mult = 1.0, const moe::Draws& draws = {});
  const moe::RoutingStats& last_routing_stats() const { return last_.stats(); }
  // Expert row buffer: automatic = padded on a GPU in capacity mode (no copy to the host), compact otherwise.
  void set_row_layout(moe::RowLayout layout) { row_layout_ = layout; }
  const std::shared_ptr<TopNGating>& gate() const { return gate_; }
  const std::shared_ptr<Experts>& experts() const { return experts_; }
  std::int64_t dim() const { return dim_; }
  std::string name() const override { return "MoE"; }

 private:
  std::int64_t dim_;
  MoEOptions opt_;
  std::shared_ptr<TopNGating> gate_;
  std::shared_ptr<Experts> experts_;
  moe::LastRouting last_;
  moe::RowLayout row_layout_ = moe::RowLayout::automatic;
};

// x -> [x + ff_before(x)] -> x + moe(RMSNorm(x)) -> [x + ff_after(x)]; the feed-forwards are
// Expert(dim, prenorm=True). Keys: moe.*, moe_prenorm.gamma, ff_before.net.*, ff_after.net.*
class SparseMoEBlock : public Module {
 public:
  explicit SparseMoEBlock(std::shared_ptr<MoE> moe, bool add_ff_before = false, bool add_ff_after = true,
                          core::Generator* gen = nullptr);
  MoEOutput forward(const Variable& x, bool noise_gates = false, double noise_mult = 1.0, const moe::Draws& draws = {});
  const std::shared_ptr<MoE>& moe() const { return moe_; }
  std::string name() const override { return "SparseMoEBlock"; }

 private:
  std::shared_ptr<MoE> moe_;
  std::shared_ptr<RMSNorm> prenorm_;
  std::shared_ptr<Expert> ff_before_, ff_after_;
};

}  // namespace moegrad::nn::st
