// st-moe-pytorch's Experts over num_experts Expert(dim, hidden_mult) (spec §3.1), stored stacked
// so the MoE fast path runs one grouped GEMM per weight:
//   w_in [E, 2h, d], b_in [E, 2h], mult_bias [E, h], w_out [E, d, h], b_out [E, d]
// (named_parameters gives these). state_entries (so state_dict, grad_dict and the optimizer's
// keyed state) exposes PyTorch's per-expert keys as slices:
//   experts.<i>.net.0.weight / .bias, experts.<i>.net.1.mult_bias, experts.<i>.net.2.weight / .bias
// (under st::MoE: experts.experts.<i>...).
// Expert parallelism: keep_experts(first, count) keeps a slice [count, ...] of each stacked
// weight; forward_rows then runs those experts, and state_dict names them by their global index
// (experts.<first + i>.net...).
#pragma once
#include "layers/module.h"

namespace moegrad::nn::st {

class Experts : public Module {
 public:
  // Each expert is initialised exactly as st::Expert(dim, hidden_mult) would be, in order.
  Experts(std::int64_t dim, std::int64_t num_experts, double hidden_mult = 4.0, TensorOptions options = {},
          core::Generator* gen = nullptr);

  // The original's API: x [b, E, c, d] -> [b, E, c, d], expert i on x[:, i] (every expert:
  // refused once keep_experts dropped some).
  Variable forward(const Variable& x);
  // Fast path: rows [R, d], local expert i (global first_expert() + i) owning rows
  // offsets[i] .. offsets[i + 1] - 1; offsets i64 [local_experts() + 1].
  Variable forward_rows(const Variable& rows, const Tensor& offsets);
  // Keeps experts [first, first + count) of the num_experts(): the stacked parameters become
  // contiguous copies of their slices (the others' memory is freed; gradients are dropped).
  void keep_experts(std::int64_t first, std::int64_t count);

  std::int64_t dim() const { return dim_; }
  std::int64_t hidden_dim() const { return hidden_; }
  std::int64_t num_experts() const { return num_experts_; }  // all of them, held here or not
  std::int64_t first_expert() const { return first_; }
  std::int64_t local_experts() const { return local_; }
  bool sharded() const { return local_ != num_experts_; }
  std::string name() const override { return "Experts"; }
  std::string extra_repr() const override;

  // experts.<global i>.<PyTorch suffix> -> slice i of the stacked parameter.
  void collect_entries(const std::string& prefix, std::vector<StateEntry>& out) const override;

 private:
  // (PyTorch key suffix, stacked parameter) in state_dict order.
  static const std::vector<std::pair<std::string, std::string>>& key_map();
  std::int64_t dim_, hidden_, num_experts_;
  std::int64_t first_ = 0, local_;  // the experts held: [first_, first_ + local_)
};

}  // namespace moegrad::nn::st
