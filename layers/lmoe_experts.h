// lucidrains/mixture-of-experts' Experts(dim, num_experts=16, hidden_dim=None, activation=GELU)
// (spec §2.1): w1 [*E, d, h] ~ U(±1/sqrt(h)), w2 [*E, h, d] ~ U(±1/sqrt(d)), no biases;
// out = act(x @ w1) @ w2 batched over the leading expert dims, x [*E, rows, d]. E may be a
// tuple (eo, ei) for the hierarchical MoE. h = hidden_dim, or 4 * dim when hidden_dim is 0.
// Expert parallelism: keep_experts(first, count) keeps experts [first, first + count) of the
// flat list (expert dims flattened): w1 becomes [count, d, h], w2 [count, h, d].
#pragma once
#include <memory>
#include <vector>

#include "layers/module.h"

namespace moegrad::nn::lmoe {

class Experts : public UnaryModule {
 public:
  // activation: any unary module (registered as child "act"); nullptr means GELU (exact erf).
  Experts(std::int64_t dim, std::vector<std::int64_t> num_experts, std::int64_t hidden_dim = 0,
          std::shared_ptr<UnaryModule> activation = nullptr, TensorOptions options = {},
          core::Generator* gen = nullptr);
  explicit Experts(std::int64_t dim, std::int64_t num_experts = 16, std::int64_t hidden_dim = 0,
                   std::shared_ptr<UnaryModule> activation = nullptr, TensorOptions options = {},
                   core::Generator* gen = nullptr)
      : Experts(dim, std::vector<std::int64_t>{num_experts}, hidden_dim, std::move(activation), options, gen) {}

  // x [*E, rows, d] -> [*E, rows, d]; a leading dim of 1 broadcasts over that expert dim
  // (every expert: refused once keep_experts dropped some).
  Variable forward(const Variable& x) override;
  // The MoE fast path: rows [R, d] of an expert-major buffer, local expert x (flat over the
  // expert dims, global first_expert() + x) owning rows offsets[x] .. offsets[x + 1] - 1;
  // offsets i64 [local_experts() + 1]; one grouped GEMM per weight.
  Variable forward_rows(const Variable& rows, const Tensor& offsets);
  std::int64_t total_experts() const;
  // Keeps flat experts [first, first + count): w1, w2 become contiguous copies of their slices
  // ([count, d, h], [count, h, d]; the others' memory is freed; gradients are dropped).
  void keep_experts(std::int64_t first, std::int64_t count);
  std::int64_t first_expert() const { return first_; }
  std::int64_t local_experts() const { return local_; }
  bool sharded() const { return local_ != total_experts(); }
  // The full shape of w1 or w2 ([*E, d, h], [*E, h, d]), held here or not.
  Shape full_shape(const std::string& parameter) const;

  std::int64_t dim() const { return dim_; }
  std::int64_t hidden_dim() const { return hidden_; }
  const std::vector<std::int64_t>& num_experts() const { return experts_; }
  std::string name() const override { return "Experts"; }
  std::string extra_repr() const override;

 private:
  std::int64_t dim_, hidden_;
  std::vector<std::int64_t> experts_;
  std::shared_ptr<UnaryModule> act_;
  std::int64_t first_ = 0, local_ = 0;  // the experts held: [first_, first_ + local_)
};

}  // namespace moegrad::nn::lmoe
