// The models `moegrad train` and the examples train: a feed-forward stack whose layers are MoE
// layers (st-moe, lucidrains, hierarchical) or, for the baseline, dense GEGLU feed-forwards whose
// width gives the active parameters per token closest to the st_moe model of the same options
// (dense_hidden: equal when 3 * dim + 3 divides the difference, otherwise within half of that
// per layer; the training log prints both counts).
//   regression: x [b, n, in] -> Linear -> L x (h + ff(RMSNorm(h))) -> RMSNorm -> Linear -> [b, n, out], MSE
//   sequence:   ids [b, n] -> Embedding -> L x SparseMoEBlock (or dense block) -> RMSNorm ->
//               Linear -> logits [b, n, vocab], cross-entropy and accuracy
//   language:   ids [b, n] -> Embedding -> L x (h + attn(RMSNorm(h)); h + ff(RMSNorm(h))) -> RMSNorm
//               -> logits = h E^T (the head tied to the embedding E) [b, n, vocab], next-token
//               cross-entropy; attn is nn::CausalSelfAttention (rotary positions), so position t
//               sees tokens 0..t only
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
  std::int64_t hidden = 64;     // each expert's hidden width (dense: see dense_hidden)
  std::int64_t experts = 8;     // hierarchical: outer * inner with outer = experts_outer
  std::int64_t experts_outer = 2;
  std::int64_t top_n = 2;       // st_moe; lucidrains and hierarchical are top-2
  std::int64_t layers = 1;
  std::int64_t heads = 4;       // language model: attention heads (dim / heads even)
  double capacity_factor = 1.25;  // train and eval
  bool dropless = false;
  bool noise_gates = false;
  double noise_mult = 1.0;
  double balance_loss_coef = 1e-2;  // st_moe (lucidrains: loss_coef)
  double router_z_loss_coef = 1e-3;
};
// "st_moe, lucidrains, hierarchical or dense"; throws for another kind.
void check_model_options(const ModelOptions& o);

// Parameters one token passes through in one feed-forward layer of kind o.kind: a MoE layer's
// gate and the experts it is routed to (st_moe: top_n; lucidrains, hierarchical: 2), or the whole
// dense feed-forward.
std::int64_t layer_active_parameters(const ModelOptions& o);
// The dense baseline's hidden width: the one whose layer's active parameters come closest to the
// st_moe layer of the same options (each unit is 3 * dim + 3 parameters; ties go to the narrower).
std::int64_t dense_hidden(const ModelOptions& o);
// A line for the log when the capacity factor is too low to matter: for groups of group_size
// tokens (a sequence) the layer's capacity rule (moe::expert_capacity) gives its minimum
// capacity at this factor and every lower one. "" otherwise (and for dense or dropless).
std::string capacity_factor_note(const ModelOptions& o, std::int64_t group_size);

struct ModelOutput {
  ag::Variable loss;       // task loss (0-d); undefined when the batch has no targets (y)
  ag::Variable aux_loss;   // weighted auxiliary losses of every MoE layer (0-d; zero for dense)
  double balance_loss = 0.0, router_z_loss = 0.0;  // unweighted, summed over layers
  double accuracy = -1.0;  // sequence task; -1 when not applicable
  std::int64_t tokens = 0;
  std::vector<nn::moe::RoutingStats> routing;  // one per MoE layer
  // What the model predicts, without gradient: regression y [b, n, out]; sequence logits [b, n, vocab].
  core::Tensor prediction;
};

class TaskModel : public nn::Module {
 public:
  virtual ModelOutput forward(const Batch& batch) = 0;
  // Parameters one token passes through (experts counted top_n times), for fair baselines.
  virtual std::int64_t active_parameters() const = 0;
  // The same count for this model with st_moe layers: what a dense baseline stands for
  // (= active_parameters() for st_moe).
  virtual std::int64_t st_moe_active_parameters() const = 0;
};

std::shared_ptr<TaskModel> make_regression_model(const ModelOptions& o, std::int64_t in_dim, std::int64_t out_dim,
                                                 core::Generator* gen);
std::shared_ptr<TaskModel> make_sequence_model(const ModelOptions& o, std::int64_t vocab, core::Generator* gen);
// The causal transformer language model above (--task text: vocab 256, bytes). The embedding is
// drawn N(0, 0.02^2) (GPT-2's scale: the tied head's logits start near 0).
std::shared_ptr<TaskModel> make_language_model(const ModelOptions& o, std::int64_t vocab, core::Generator* gen);

}  // namespace moegrad::train
