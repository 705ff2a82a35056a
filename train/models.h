// The models `moegrad train` and the examples train: a feed-forward stack whose layers are MoE
// layers (st-moe, lucidrains, hierarchical) or, for the baseline, dense GEGLU feed-forwards with
// the same active parameters per token.
//   regression: x [b, n, in] -> Linear -> L x (h + ff(RMSNorm(h))) -> RMSNorm -> Linear -> [b, n, out], MSE
//   sequence:   ids [b, n] -> Embedding -> L x SparseMoEBlock (or dense block) -> RMSNorm ->
//               Linear -> logits [b, n, vocab], cross-entropy and accuracy
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "layers/layers.h"
#include "train/data.h"

namespace moegrad::train {

struct ModelOptions {
  std::string kind = "st_moe";  // st_moe, lucidrains, hierarchical, dense
  std::int64_t dim = 32;
  std::int64_t hidden = 64;     // each expert's hidden width (dense: top_n * hidden)
  std::int64_t experts = 8;     // hierarchical: outer * inner with outer = experts_outer
  std::int64_t experts_outer = 2;
  std::int64_t top_n = 2;       // st_moe; lucidrains and hierarchical are top-2
  std::int64_t layers = 1;
  double capacity_factor = 1.25;  // train and eval
  bool dropless = false;
  bool noise_gates = false;
  double noise_mult = 1.0;
  double balance_loss_coef = 1e-2;  // st_moe (lucidrains: loss_coef)
  double router_z_loss_coef = 1e-3;
};
// "st_moe, lucidrains, hierarchical or dense"; throws for another kind.
void check_model_options(const ModelOptions& o);

struct ModelOutput {
  ag::Variable loss;       // task loss (0-d)
  ag::Variable aux_loss;   // weighted auxiliary losses of every MoE layer (0-d; zero for dense)
  double balance_loss = 0.0, router_z_loss = 0.0;  // unweighted, summed over layers
  double accuracy = -1.0;  // sequence task; -1 when not applicable
  std::int64_t tokens = 0;
  std::vector<nn::moe::RoutingStats> routing;  // one per MoE layer
};

class TaskModel : public nn::Module {
 public:
  virtual ModelOutput forward(const Batch& batch) = 0;
  // Parameters one token passes through (experts counted top_n times), for fair baselines.
  virtual std::int64_t active_parameters() const = 0;
};

std::shared_ptr<TaskModel> make_regression_model(const ModelOptions& o, std::int64_t in_dim, std::int64_t out_dim,
                                                 core::Generator* gen);
std::shared_ptr<TaskModel> make_sequence_model(const ModelOptions& o, std::int64_t vocab, core::Generator* gen);

}  // namespace moegrad::train
