// st-moe-pytorch's MoE and SparseMoEBlock (spec §3.3, §3.4) on the index-based fast path:
// TopNGating's routing -> rows gathered into an expert-major buffer (scaled by the dispatch
// value, straight-through when enabled) -> grouped GEMMs of the stacked experts -> weighted
// combine (moe::Pipeline). No [b, n, e, c] tensor is built.
// Keys: gate.to_gates.weight, gate.threshold_train/_eval, experts.experts.<i>.net.{0,1,2}.*
#pragma once
#include <memory>

#include "layers/moe/moe_layer.h"
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

// moe::MoEOutput: output [b, n, d]; aux_loss = balance * balance_loss_coef + z * router_z_loss_coef
// (the original's total_aux_loss); balance_loss, router_z_loss 0-d in training, (1,) zeros in eval.
class MoE : public moe::MoELayer {
 public:
  MoE(std::int64_t dim, std::int64_t num_experts = 16, MoEOptions opt = {}, TensorOptions options = {},
      core::Generator* gen = nullptr);
  using moe::MoELayer::forward;
  moe::MoEOutput forward(const Variable& x, const moe::MoEForward& f) override;
  // The original's call: forward(x, noise_gates, noise_mult).
  moe::MoEOutput forward(const Variable& x, bool noise_gates, double noise_mult = 1.0, const moe::Draws& draws = {}) {
    return forward(x, moe::MoEForward{noise_gates, noise_mult, draws});
  }
  const moe::RoutingStats& last_routing_stats() const override { return last_.stats(); }
  std::int64_t total_experts() const override { return experts_->num_experts(); }
  std::vector<std::string> expert_parameter_names() const override;
  const std::shared_ptr<TopNGating>& gate() const { return gate_; }
  const std::shared_ptr<Experts>& experts() const { return experts_; }
  std::int64_t dim() const { return dim_; }
  std::string name() const override { return "MoE"; }

 protected:
  const char* op_name() const override { return "st_moe.MoE"; }
  void keep_experts(std::int64_t first, std::int64_t count) override { experts_->keep_experts(first, count); }

 private:
  std::int64_t dim_;
  MoEOptions opt_;
  std::shared_ptr<TopNGating> gate_;
  std::shared_ptr<Experts> experts_;
  moe::LastRouting last_;
};

// x -> [x + ff_before(x)] -> x + moe(RMSNorm(x)) -> [x + ff_after(x)]; the feed-forwards are
// Expert(dim, prenorm=True). Keys: moe.*, moe_prenorm.gamma, ff_before.net.*, ff_after.net.*
class SparseMoEBlock : public Module {
 public:
  explicit SparseMoEBlock(std::shared_ptr<MoE> moe, bool add_ff_before = false, bool add_ff_after = true,
                          core::Generator* gen = nullptr);
  // output = the block's output; the losses are the MoE's.
  moe::MoEOutput forward(const Variable& x, const moe::MoEForward& f = {});
  moe::MoEOutput forward(const Variable& x, bool noise_gates, double noise_mult = 1.0, const moe::Draws& draws = {}) {
    return forward(x, moe::MoEForward{noise_gates, noise_mult, draws});
  }
  const std::shared_ptr<MoE>& moe() const { return moe_; }
  std::string name() const override { return "SparseMoEBlock"; }

 private:
  std::shared_ptr<MoE> moe_;
  std::shared_ptr<RMSNorm> prenorm_;
  std::shared_ptr<Expert> ff_before_, ff_after_;
};

}  // namespace moegrad::nn::st
