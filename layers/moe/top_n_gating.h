// st-moe-pytorch's TopNGating (spec §3.2), also zeta's TopNGating (§4, with its
// min_expert_capacity; moegrad adopts st-moe's cumulative slot offset, §7 C1).
//   x [b, n, d] -> logits = to_gates(x) [b, n, e] (+ noise_mult * gumbel when noise_gates)
//   -> softmax -> top-n (or differentiable top-n) -> normalised gates -> random second-choice
//   routing against per-choice thresholds -> slots under capacity.
// Keys: to_gates.weight [e, d], buffers threshold_train / threshold_eval [top_n].
#pragma once
#include <vector>

#include "layers/linear.h"
#include "layers/moe/coor_descent.h"
#include "layers/moe/gate_result.h"

namespace moegrad::nn::st {

struct TopNGatingOptions {
  double eps = 1e-9;
  std::int64_t top_n = 2;  // >= 1 (the originals require >= 2)
  // One value for every choice after the first, or top_n - 1 values.
  std::vector<double> threshold_train{0.2}, threshold_eval{0.2};
  double capacity_factor_train = 1.25, capacity_factor_eval = 2.0;
  bool straight_through_dispatch_tensor = true;
  bool differentiable_topk = false;
  bool differentiable_topk_fused = true;  // the Triton kernel on CUDA in the original; same math
  std::int64_t min_expert_capacity = 4;   // zeta's option; st-moe hard-codes 4
  bool dropless = false;                  // beyond the originals: capacity n, nothing is dropped
  // The balance loss counts first choices after capacity, as st-moe and zeta do (spec §7 C3);
  // false counts them before capacity, as lucidrains and tensor2tensor do.
  bool density_after_capacity = true;
};

class TopNGating : public Module {
 public:
  TopNGating(std::int64_t dim, std::int64_t num_gates, TopNGatingOptions opt = {}, TensorOptions options = {},
             core::Generator* gen = nullptr);

  // The fast-path form: routing, weights [b * n, top_n] and the losses (0-d in training; the
  // (1,) zeros in eval, like the original). Draws not given come from the generator.
  moe::GateResult route(const Variable& x, bool noise_gates = false, double noise_mult = 1.0,
                        const moe::Draws& draws = {});
  // The original's return: dispatch, combine [b, n, e, c], balance loss, router z-loss.
  moe::DenseGateOutput forward(const Variable& x, bool noise_gates = false, double noise_mult = 1.0,
                               const moe::Draws& draws = {});

  std::int64_t dim() const { return dim_; }
  std::int64_t num_gates() const { return num_gates_; }
  const TopNGatingOptions& options() const { return opt_; }
  // Capacity for a sequence of n tokens in the current mode.
  std::int64_t capacity(std::int64_t n) const;
  std::string name() const override { return "TopNGating"; }
  std::string extra_repr() const override;

 private:
  std::int64_t dim_, num_gates_;
  TopNGatingOptions opt_;
  core::Generator* gen_;
  std::shared_ptr<Linear> to_gates_;
};

}  // namespace moegrad::nn::st

namespace moegrad::nn::zeta {
using TopNGating = st::TopNGating;
using TopNGatingOptions = st::TopNGatingOptions;
}  // namespace moegrad::nn::zeta
