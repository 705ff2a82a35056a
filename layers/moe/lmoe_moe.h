// lucidrains/mixture-of-experts' MoE and HeirarchicalMoE (spec §2.3, §2.4), on the index-based
// fast path: Top2Gating's routing -> rows gathered into an expert-major buffer -> one grouped
// GEMM per expert matrix -> weighted combine (moe::Pipeline; HeirarchicalMoE: the outer gate's
// dispatch and combine around the inner level's pipeline, which holds the experts). No
// [b, n, e, c] tensor is built. moe::MoEOutput: aux_loss = balance loss * loss_coef (hierarchical:
// (outer + inner) * loss_coef), balance_loss unweighted, router_z_loss undefined.
// Keys: MoE gate.w_gating, experts.w1, experts.w2; HeirarchicalMoE gate_outer.w_gating,
// gate_inner.w_gating, experts.w1 [eo, ei, d, h], experts.w2.
#pragma once
#include <memory>
#include <string>

#include "layers/lmoe_experts.h"
#include "layers/moe/moe_layer.h"
#include "layers/moe/top2_gating.h"

namespace moegrad::nn::lmoe {

struct MoEOptions {
  std::int64_t hidden_dim = 0;                  // 0: 4 * dim
  std::shared_ptr<UnaryModule> activation;      // nullptr: ReLU (the MoE default, spec §7 C8)
  std::string second_policy_train = "random", second_policy_eval = "random";
  double second_threshold_train = 0.2, second_threshold_eval = 0.2;
  double capacity_factor_train = 1.25, capacity_factor_eval = 2.0;
  double loss_coef = 1e-2;
  std::shared_ptr<Experts> experts;             // custom experts; built from the options otherwise
  bool dropless = false;                        // beyond the original: nothing is dropped
};

class MoE : public moe::MoELayer {
 public:
  MoE(std::int64_t dim, std::int64_t num_experts = 16, MoEOptions opt = {}, TensorOptions options = {},
      core::Generator* gen = nullptr);
  using moe::MoELayer::forward;
  // x [b, n, d]; f.draws.policy_uniform replaces the 'random' policy's draw (no gate noise here).
  moe::MoEOutput forward(const Variable& x, const moe::MoEForward& f) override;
  const moe::RoutingStats& last_routing_stats() const override { return last_.stats(); }
  std::int64_t total_experts() const override { return num_experts_; }
  std::vector<std::string> expert_parameter_names() const override { return {"experts.w1", "experts.w2"}; }
  const std::shared_ptr<Top2Gating>& gate() const { return gate_; }
  const std::shared_ptr<Experts>& experts() const { return experts_; }
  std::string name() const override { return "MoE"; }

 protected:
  const char* op_name() const override { return "lmoe.MoE"; }
  void keep_experts(std::int64_t first, std::int64_t count) override { experts_->keep_experts(first, count); }

 private:
  std::int64_t dim_, num_experts_;
  double loss_coef_;
  std::shared_ptr<Top2Gating> gate_;
  std::shared_ptr<Experts> experts_;
  moe::LastRouting last_;
};

class HeirarchicalMoE : public moe::MoELayer {
 public:
  // num_experts = (outer, inner); the same policies, thresholds and capacity factors on both levels.
  HeirarchicalMoE(std::int64_t dim, std::pair<std::int64_t, std::int64_t> num_experts = {4, 4}, MoEOptions opt = {},
                  TensorOptions options = {}, core::Generator* gen = nullptr);
  using moe::MoELayer::forward;
  // f.draws.policy_uniform [b, n] (outer gate), f.draws.policy_uniform_inner [eo, b, co] (inner gate).
  moe::MoEOutput forward(const Variable& x, const moe::MoEForward& f) override;
  const moe::RoutingStats& last_routing_stats() const override { return last_.stats(); }  // inner experts (eo * ei)
  const moe::RoutingStats& last_outer_routing_stats() const { return last_outer_.stats(); }
  // The experts are flat over (outer, inner): X = eo * ei; set_row_layout sets the inner buffer's.
  std::int64_t total_experts() const override { return outer_ * inner_; }
  std::vector<std::string> expert_parameter_names() const override { return {"experts.w1", "experts.w2"}; }
  const std::shared_ptr<Experts>& experts() const { return experts_; }
  std::string name() const override { return "HeirarchicalMoE"; }

 protected:
  const char* op_name() const override { return "lmoe.HeirarchicalMoE"; }
  void keep_experts(std::int64_t first, std::int64_t count) override { experts_->keep_experts(first, count); }

 private:
  std::int64_t dim_, outer_, inner_;
  double loss_coef_;
  std::shared_ptr<Top2Gating> gate_outer_, gate_inner_;
  std::shared_ptr<Experts> experts_;
  moe::LastRouting last_, last_outer_;
};

}  // namespace moegrad::nn::lmoe
