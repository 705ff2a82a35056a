// lucidrains/mixture-of-experts' Top2Gating (spec §2.2, its forward as in the repository file;
// the 'threshold' policy masks per token, §7 C2).
//   x [*outer, b, n, d] -> P = softmax(x @ w_gating) -> top-1, then top-1 of P without it ->
//   gates normalised by (g1 + g2 + eps) -> second-choice policy -> slots under capacity.
// Key: w_gating [*outer, d, e] ~ N(0, 1), unscaled. importance [*outer, b, n] in {0, 0.5, 1}:
// 1 routes normally, 0.5 routes only the argmax through the second slot, 0 routes nothing.
#pragma once
#include <string>
#include <vector>

#include "layers/moe/gate_result.h"
#include "layers/module.h"

namespace moegrad::nn::lmoe {

struct Top2GatingOptions {
  double eps = 1e-9;
  std::vector<std::int64_t> outer_expert_dims;
  std::string second_policy_train = "random", second_policy_eval = "random";  // all, none, threshold, random
  double second_threshold_train = 0.2, second_threshold_eval = 0.2;
  double capacity_factor_train = 1.25, capacity_factor_eval = 2.0;
  bool dropless = false;                  // beyond the original: capacity n, nothing is dropped
  bool density_after_capacity = false;    // the original counts first choices before capacity (§7 C3)
};

class Top2Gating : public Module {
 public:
  Top2Gating(std::int64_t dim, std::int64_t num_gates, Top2GatingOptions opt = {}, TensorOptions options = {},
             core::Generator* gen = nullptr);

  // Fast-path form: routing over G = prod(outer) * b groups, weights [G * n, 2], the balance loss
  // (computed in eval too, like the original). policy_uniform [*outer, b, n] replaces the draw of
  // the 'random' policy.
  moe::GateResult route(const Variable& x, const Tensor& importance = {}, const Tensor& policy_uniform = {});
  // The original's return: dispatch, combine [*outer, b, n, e, c] and the loss (in balance_loss).
  moe::DenseGateOutput forward(const Variable& x, const Tensor& importance = {}, const Tensor& policy_uniform = {});

  std::int64_t dim() const { return dim_; }
  std::int64_t num_gates() const { return num_gates_; }
  const Top2GatingOptions& options() const { return opt_; }
  std::int64_t capacity(std::int64_t n) const;
  std::string name() const override { return "Top2Gating"; }
  std::string extra_repr() const override;

 private:
  std::int64_t dim_, num_gates_;
  Top2GatingOptions opt_;
  core::Generator* gen_;
};

}  // namespace moegrad::nn::lmoe
