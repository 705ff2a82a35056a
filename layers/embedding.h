// Embedding(num_embeddings, dim): weight [num, dim] ~ N(0, 1) like nn.Embedding; forward
// looks rows up by i64 ids [...] -> [..., dim] (index_select, whose gradient sums rows back).
#pragma once
#include "layers/module.h"

namespace moegrad::nn {

class Embedding : public Module {
 public:
  Embedding(std::int64_t num_embeddings, std::int64_t dim, TensorOptions options = {}, core::Generator* gen = nullptr);
  Variable forward(const Tensor& ids);  // ids in [0, num_embeddings)
  std::int64_t num_embeddings() const { return num_; }
  std::int64_t dim() const { return dim_; }
  std::string name() const override { return "Embedding"; }
  std::string extra_repr() const override { return fmt::format("{}, {}", num_, dim_); }

 private:
  std::int64_t num_, dim_;
};

}  // namespace moegrad::nn
