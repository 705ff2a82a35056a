#include "train/inference.h"

#include <fmt/format.h>

#include "core/error.h"
#include "core/kernels/philox.h"
#include "layers/moe/moe_layer.h"
#include "train/checkpoint.h"

namespace moegrad::train {

std::uint64_t draw_seed(std::uint64_t seed, std::uint64_t stream, std::int64_t index) {
  using core::splitmix64;
  return splitmix64(splitmix64(splitmix64(seed) ^ stream) ^ static_cast<std::uint64_t>(index));
}

std::shared_ptr<TaskModel> make_task_model(const TrainConfig& c, core::Generator* gen) {
  if (c.task == "tensors" && c.data_kind == "auto")
    fail("train", "--task tensors: the model follows --train-data, which has not been read (data_kind auto)");
  if (c.task == "text") return make_language_model(c.model, c.vocab, gen);
  if (c.token_task()) return make_sequence_model(c.model, c.vocab, gen);
  return make_regression_model(c.model, c.input_dim, c.output_dim > 0 ? c.output_dim : c.input_dim, gen);
}

InferenceModel::InferenceModel(const std::string& checkpoint) : path_(checkpoint) {
  const Checkpoint ck = load_checkpoint(checkpoint);
  config_ = TrainConfig::from_json(json::parse(ck.config_json, checkpoint, "checkpoint"), checkpoint + " (config_json)");
  gen_.manual_seed(config_.seed);
  model_ = make_task_model(config_, &gen_);
  try {
    model_->load_state_dict(ck.model);
  } catch (const Error& e) {
    fail("checkpoint", "'{}': its parameters do not fit the model of its own configuration: {}", checkpoint, e.what());
  }
  model_->eval();
  layers_ = nn::moe::moe_layers(model_);
}

void InferenceModel::check_fits(const TensorData& d, const std::string& flag) const {
  const bool tokens = d.kind == TensorData::Kind::tokens;
  const std::string model = config_.token_task()
                                ? fmt::format("a token model (vocabulary {})", config_.vocab)
                                : fmt::format("a regression model (x width {} -> y width {})", config_.input_dim,
                                              config_.output_dim > 0 ? config_.output_dim : config_.input_dim);
  if (tokens != config_.token_task())
    fail("data", "{} '{}' holds {} but checkpoint '{}' is {}", flag, d.path, tokens ? "tokens" : "regression data (x)",
         path_, model);
  if (tokens) {
    d.check_vocab(config_.vocab, fmt::format("the model of '{}' has a vocabulary of {}", path_, config_.vocab));
    return;
  }
  const std::int64_t out = config_.output_dim > 0 ? config_.output_dim : config_.input_dim;
  if (d.in_dim() != config_.input_dim)
    fail("data", "{} '{}' has x of width {} but checkpoint '{}' is {}", flag, d.path, d.in_dim(), path_, model);
  if (d.y.defined() && d.out_dim() != out)
    fail("data", "{} '{}' has y of width {} but checkpoint '{}' is {}", flag, d.path, d.out_dim(), path_, model);
}

ModelOutput InferenceModel::run(const OrderedTensors& batches, std::int64_t j) { return run(batches.at(j), j); }

ModelOutput InferenceModel::run(const Batch& batch, std::int64_t j) {
  ag::NoGradGuard no_grad;
  gen_.manual_seed(draw_seed(config_.seed, 1, j));
  return model_->forward(batch);
}

void RoutingTotals::add() {
  kept_.resize(layers_.size());
  routed_.resize(layers_.size());
  for (std::size_t l = 0; l < layers_.size(); ++l) {
    const nn::moe::RoutingStats& s = layers_[l].second->last_routing_stats();
    kept_[l].resize(s.tokens_per_expert.size());
    routed_[l].resize(s.routed_per_expert.size());
    for (std::size_t e = 0; e < s.tokens_per_expert.size(); ++e) kept_[l][e] += s.tokens_per_expert[e];
    for (std::size_t e = 0; e < s.routed_per_expert.size(); ++e) routed_[l][e] += s.routed_per_expert[e];
  }
}

LayerRouting RoutingTotals::stats() const {
  LayerRouting out;
  for (std::size_t l = 0; l < layers_.size(); ++l)
    out.emplace_back(layers_[l].first, l < kept_.size() ? nn::moe::routing_stats(kept_[l], routed_[l])
                                                        : nn::moe::routing_stats({}, {}));
  return out;
}

json::Json routing_stats_json(const nn::moe::RoutingStats& s, bool with_counts) {
  json::Json l = json::Json::object();
  l["tokens_per_expert"] = s.tokens_per_expert;
  if (with_counts) {
    l["routed_per_expert"] = s.routed_per_expert;
    l["routed"] = s.routed;
    l["kept"] = s.kept;
  }
  l["dropped_fraction"] = s.dropped_fraction;
  l["dead_experts"] = s.dead_experts;
  l["max_load_over_mean"] = s.max_load_over_mean;
  return l;
}

json::Json routing_json(const LayerRouting& routing) {
  json::Json layers = json::Json::array();
  for (const auto& [name, s] : routing) {
    json::Json l = json::Json::object();
    l["name"] = name;
    l.update(routing_stats_json(s, /*with_counts=*/true));
    layers.push_back(std::move(l));
  }
  return layers;
}

std::string routing_text(const LayerRouting& routing) {
  std::string s;
  for (const auto& [name, st] : routing) s += fmt::format("\nlayer {}: {}", name, st.to_string());
  return s;
}

FileEvaluation evaluate_file(InferenceModel& m, const OrderedTensors& batches) {
  FileEvaluation r;
  r.checkpoint = m.path();
  r.data = batches.data().path;
  r.rows = batches.data().rows();
  r.batches = batches.batches();
  r.batch_size = batches.batch_size();
  MOEGRAD_CHECK(batches.data().y.defined(), "eval", "'{}' was read without targets", r.data);
  RoutingTotals routing(m);
  double loss = 0, correct = 0, weight = 0;
  for (std::int64_t j = 0; j < r.batches; ++j) {
    const ModelOutput out = m.run(batches, j);
    // Regression's loss is a mean over every value of y, the token loss a mean over positions.
    const double w = m.config().token_task() ? static_cast<double>(out.tokens)
                                             : static_cast<double>(out.prediction.numel());
    loss += core::sum(out.loss.value()).item<double>() * w;
    weight += w;
    if (out.accuracy >= 0) correct += out.accuracy * static_cast<double>(out.tokens);
    r.tokens += out.tokens;
    routing.add();
  }
  r.loss = loss / weight;
  if (m.config().token_task()) r.accuracy = correct / static_cast<double>(r.tokens);
  r.routing = routing.stats();
  return r;
}

json::Json FileEvaluation::to_json() const {
  json::Json out = json::Json::object();
  out["checkpoint"] = checkpoint;
  out["data"] = data;
  out["rows"] = rows;
  out["tokens"] = tokens;
  out["batches"] = batches;
  out["batch_size"] = batch_size;
  out["loss"] = loss;
  if (accuracy >= 0) out["accuracy"] = accuracy;
  out["layers"] = routing_json(routing);
  return out;
}

std::string FileEvaluation::to_text() const {
  std::string s = fmt::format("eval {} on {}: {} rows, {} tokens in {} batches of {}\nloss {:.6f}", checkpoint, data,
                              rows, tokens, batches, batch_size, loss);
  if (accuracy >= 0) s += fmt::format(", accuracy {:.4f}", accuracy);
  return s + routing_text(routing);
}

}  // namespace moegrad::train
