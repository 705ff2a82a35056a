// zeta's MoERouter(dim, num_experts, hidden_layers, mechanism) as moegrad adopts it (spec §7 S3):
//   layers: Linear(d, e), or Linear(d, H0), ReLU, Linear(H0, H1), ..., ReLU, Linear(H_last, e)
//   'softmax': softmax over the expert (last) dim; 'gumbel': F.gumbel_softmax(hard=True), i.e.
//   y_hard - y_soft.detach() + y_soft with y_soft = softmax(logits + gumbel noise).
// Keys: layers.<i>.weight / .bias (ReLUs take the odd indices). x [..., d] -> [..., e].
#pragma once
#include <string>
#include <vector>

#include "layers/moe/routing.h"
#include "layers/sequential.h"

namespace moegrad::nn::zeta {

class MoERouter : public Module {
 public:
  // mechanism: "softmax" or "gumbel"; anything else throws.
  MoERouter(std::int64_t dim, std::int64_t num_experts, std::vector<std::int64_t> hidden_layers = {},
            std::string mechanism = "softmax", TensorOptions options = {}, core::Generator* gen = nullptr);
  // draws.gumbel_noise [..., e] replaces the gumbel draw.
  Variable forward(const Variable& x, const moe::Draws& draws = {});
  const std::string& mechanism() const { return mechanism_; }
  std::string name() const override { return "MoERouter"; }
  std::string extra_repr() const override;

 private:
  std::int64_t dim_, num_experts_;
  std::vector<std::int64_t> hidden_;
  std::string mechanism_;
  core::Generator* gen_;
  std::shared_ptr<Sequential> layers_;
};

}  // namespace moegrad::nn::zeta
