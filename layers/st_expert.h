// st-moe-pytorch's Expert(dim, hidden_mult=4, mult_bias=True, prenorm=False): a GEGLU
// feed-forward. hidden = int(dim * hidden_mult * 2 / 3); child "net" is
//   [RMSNorm(dim) if prenorm], Linear(dim, 2*hidden), GEGLU(hidden, mult_bias), Linear(hidden, dim)
// so the keys are net.0.weight, net.0.bias, net.1.mult_bias, net.2.weight, net.2.bias
// (prenorm shifts them: net.0.gamma, net.1.*, net.2.mult_bias, net.3.*).
#pragma once
#include <memory>

#include "layers/sequential.h"

namespace moegrad::nn::st {

class Expert : public UnaryModule {
 public:
  // Init as st-moe: nn.Linear's default init for both Linears (weight then bias, in order),
  // then each Linear's weight and bias re-drawn from U(±out_features^-0.5), in order.
  explicit Expert(std::int64_t dim, double hidden_mult = 4.0, bool mult_bias = true, bool prenorm = false,
                  TensorOptions options = {}, core::Generator* gen = nullptr);
  Variable forward(const Variable& x) override;  // [..., dim] -> [..., dim]

  static std::int64_t hidden_dim_for(std::int64_t dim, double hidden_mult);  // int(dim * mult * 2 / 3)
  std::int64_t dim() const { return dim_; }
  std::int64_t hidden_dim() const { return hidden_; }
  bool prenorm() const { return prenorm_; }
  const std::shared_ptr<Sequential>& net() const { return net_; }
  std::string name() const override { return "Expert"; }

 private:
  std::int64_t dim_, hidden_;
  bool prenorm_;
  std::shared_ptr<Sequential> net_;
};

}  // namespace moegrad::nn::st
