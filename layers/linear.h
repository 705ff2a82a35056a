// Linear(in, out, bias): y = x @ W^T + b, W [out, in], b [out]; PyTorch's nn.Linear.
#pragma once
#include "layers/module.h"

namespace moegrad::nn {

class Linear : public UnaryModule {
 public:
  // PyTorch's default init: W ~ kaiming_uniform(a = sqrt 5) = U(±1/sqrt(in)), then b ~ U(±1/sqrt(in)).
  Linear(std::int64_t in_features, std::int64_t out_features, bool bias = true, TensorOptions options = {},
         core::Generator* gen = nullptr);

  // x [..., in] -> [..., out]. Leading dims are flattened into one GEMM with W^T (a view).
  Variable forward(const Variable& x) override;

  const Variable& weight() const { return parameter("weight"); }
  const Variable& bias() const { return parameter("bias"); }  // throws when built without bias
  bool has_bias() const { return has_bias_; }
  std::int64_t in_features() const { return in_; }
  std::int64_t out_features() const { return out_; }

  std::string name() const override { return "Linear"; }
  std::string extra_repr() const override;

 private:
  std::int64_t in_, out_;
  bool has_bias_;
};

}  // namespace moegrad::nn
