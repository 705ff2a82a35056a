// A trained model read back from a checkpoint and run over a file of tensors: what `moegrad eval`
// and `moegrad predict` do (tools/eval_command.cpp, tools/predict_command.cpp).
//
//   train::InferenceModel m("ckpt/step-000000100.h5");      // the model of its config_json, eval mode
//   auto data = train::load_tensor_data("eval.h5", "--data");
//   m.check_fits(*data);                                      // one line naming a width or vocabulary mismatch
//   train::OrderedTensors batches(data, m.config().batch_size);
//   train::FileEvaluation r = train::evaluate_file(m, batches);
//
// Batch j of a file runs with the generator seeded by draw_seed(seed, 1, j), the stream of the
// Trainer's evaluation, so the commands reproduce the evaluation a run logged when given the
// same file and batch size (and route the same way in eval and predict).
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "train/config.h"
#include "train/tensor_data.h"

namespace moegrad::train {

// The seed of the generator that draws batch `index`'s gate noise and routing uniforms:
// splitmix64 of the run's seed, the stream and the index (stream 0: training micro-batches,
// 1: evaluation). A function of the data, not of the rank that processes it.
std::uint64_t draw_seed(std::uint64_t seed, std::uint64_t stream, std::int64_t index);

// The model of a run's options, initialised from gen: the Trainer's, and the commands'. For
// --task tensors, data_kind must be resolved (regression or tokens).
std::shared_ptr<TaskModel> make_task_model(const TrainConfig& c, core::Generator* gen);

class InferenceModel {
 public:
  // Loads the checkpoint (every checksum verified), rebuilds the model of its configuration on
  // the CPU, loads its parameters and sets eval mode. Errors name the file.
  explicit InferenceModel(const std::string& checkpoint);
  InferenceModel(const InferenceModel&) = delete;  // the layers hold the generator's address
  InferenceModel& operator=(const InferenceModel&) = delete;

  const std::string& path() const { return path_; }
  const TrainConfig& config() const { return config_; }
  TaskModel& model() { return *model_; }
  // One line naming the mismatch unless the file fits the model: its kind (regression or
  // tokens), x's width, y's width (when read), the tokens within the vocabulary.
  void check_fits(const TensorData& data, const std::string& flag) const;
  // Batch j of `batches`, without gradient, in eval mode.
  ModelOutput run(const OrderedTensors& batches, std::int64_t j);
  // The same for a batch made elsewhere (train/text_evaluation.h's windows): draws of batch j.
  ModelOutput run(const Batch& batch, std::int64_t j);
  // The MoE layers, by their dotted module path ("blocks.0.ff.moe"), in module order.
  const std::vector<std::pair<std::string, std::shared_ptr<nn::moe::MoELayer>>>& moe_layers() const { return layers_; }

 private:
  std::string path_;
  TrainConfig config_;
  core::Generator gen_;
  std::shared_ptr<TaskModel> model_;
  std::vector<std::pair<std::string, std::shared_ptr<nn::moe::MoELayer>>> layers_;
};

// Each MoE layer's kept and routed choices summed over the forwards a command runs.
using LayerRouting = std::vector<std::pair<std::string, nn::moe::RoutingStats>>;
class RoutingTotals {
 public:
  explicit RoutingTotals(const InferenceModel& m) : layers_(m.moe_layers()) {}
  void add();  // the layers' last forward
  LayerRouting stats() const;

 private:
  const std::vector<std::pair<std::string, std::shared_ptr<nn::moe::MoELayer>>>& layers_;
  std::vector<std::vector<std::int64_t>> kept_, routed_;
};
// One layer's statistics: tokens_per_expert, [routed_per_expert, routed, kept,] dropped_fraction,
// dead_experts, max_load_over_mean (the training metrics leave the counts out).
json::Json routing_stats_json(const nn::moe::RoutingStats& s, bool with_counts);
json::Json routing_json(const LayerRouting& routing);  // [{"name", "tokens_per_expert", ...}]
std::string routing_text(const LayerRouting& routing);  // "\nlayer NAME: ..." per layer

// A whole file through the model.
struct FileEvaluation {
  std::string checkpoint, data;
  std::int64_t rows = 0, batches = 0, batch_size = 0, tokens = 0;
  // regression: mean squared error over every value of y; tokens: mean cross-entropy per token
  // (natural log). Each batch's mean weighted by its size, so the last, shorter batch counts as
  // its rows.
  double loss = 0;
  double accuracy = -1;  // tokens: the fraction of positions whose argmax is the target; -1 otherwise
  // Per MoE layer: its kept and routed choices summed over the file's batches.
  LayerRouting routing;

  json::Json to_json() const;
  std::string to_text() const;  // what `moegrad eval` prints
};
FileEvaluation evaluate_file(InferenceModel& m, const OrderedTensors& batches);

}  // namespace moegrad::train
