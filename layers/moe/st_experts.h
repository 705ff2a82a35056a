// st-moe-pytorch's Experts over num_experts Expert(dim, hidden_mult) (spec §3.1), stored stacked
// so the MoE fast path runs one grouped GEMM per weight:
//   w_in [E, 2h, d], b_in [E, 2h], mult_bias [E, h], w_out [E, d, h], b_out [E, d]
// (named_parameters gives these). state_dict exposes PyTorch's per-expert keys as views:
//   experts.<i>.net.0.weight / .bias, experts.<i>.net.1.mult_bias, experts.<i>.net.2.weight / .bias
// (under st::MoE: experts.experts.<i>...).
#pragma once
#include "layers/module.h"

namespace moegrad::nn::st {

class Experts : public Module {
 public:
  // Each expert is initialised exactly as st::Expert(dim, hidden_mult) would be, in order.
  Experts(std::int64_t dim, std::int64_t num_experts, double hidden_mult = 4.0, TensorOptions options = {},
          core::Generator* gen = nullptr);

  // The original's API: x [b, E, c, d] -> [b, E, c, d], expert i on x[:, i].
  Variable forward(const Variable& x);
  // Fast path: rows [R, d], expert i owning rows offsets[i] .. offsets[i + 1] - 1.
  Variable forward_rows(const Variable& rows, const Tensor& offsets);

  std::int64_t dim() const { return dim_; }
  std::int64_t hidden_dim() const { return hidden_; }
  std::int64_t num_experts() const { return num_experts_; }
  std::string name() const override { return "Experts"; }
  std::string extra_repr() const override;

  void collect_state(const std::string& prefix, StateDict& out) const override;
  void load_state(const std::string& prefix, const StateDict& in, LoadReport& report) override;
  void collect_grads(const std::string& prefix, StateDict& out) const override;

 private:
  // (PyTorch key suffix, stacked parameter) in state_dict order.
  static const std::vector<std::pair<std::string, std::string>>& key_map();
  std::int64_t dim_, hidden_, num_experts_;
};

}  // namespace moegrad::nn::st
