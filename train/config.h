// The configuration of a training run: what `moegrad train` resolves from its flags and an
// optional --config FILE.json, prints once at start-up, and stores in every checkpoint
// (config_json). JSON keys are the flag names with '_' for '-'.
#pragma once
#include <cstdint>
#include <string>

#include "train/json.h"
#include "train/models.h"

namespace moegrad::train {

struct TrainConfig {
  TrainConfig() {  // the default run: 16 small experts on 16 clusters (scripts/demo)
    model.experts = 16;
    model.hidden = 32;
  }
  // task and model
  std::string task = "clustered-regression";  // or "sequence"
  ModelOptions model;                          // --model, --experts, --top-n, ...
  std::int64_t input_dim = 16;                 // regression input/output width
  std::int64_t clusters = 16;                  // regression clusters
  std::int64_t vocab = 64;                     // sequence vocabulary
  std::int64_t seq_len = 16;
  std::int64_t batch_size = 32;
  // optimisation
  std::int64_t steps = 1000;
  std::string optimizer = "adamw";  // sgd, adam, adamw
  double lr = 3e-3;
  double weight_decay = 0.0;
  double momentum = 0.9;            // sgd
  std::int64_t warmup = 20;
  double min_lr = 0.0;
  double clip = 1.0;                // global grad-norm clip; 0 = off
  std::int64_t grad_accum = 1;
  bool skip_nonfinite = false;
  std::uint64_t seed = 0;
  std::string device = "cpu";       // cpu, cuda or cuda:N (the model, batches, optimizer state)
  // evaluation, logging, checkpoints
  std::int64_t eval_every = 200;    // 0 = only at the end
  std::int64_t eval_batches = 4;
  std::int64_t log_every = 10;
  bool progress = true;             // redraw one line on a terminal
  std::string metrics;              // JSONL path; "" = none
  std::string ckpt_dir;             // "" = no checkpoints
  std::int64_t ckpt_every = 250;
  std::int64_t keep_last = 3;
  std::string resume = "auto";      // auto, none, or a checkpoint path
  std::int64_t stop_at = 0;         // > 0: end after this step with a checkpoint
  bool overwrite = false;           // may remove checkpoints past the start and empty a fresh run's metrics

  json::Value to_json() const;
  // Keys not given keep their defaults; unknown keys and bad values throw "[config] ...".
  static TrainConfig from_json(const json::Value& v);
  void validate() const;  // "[config] --lr must be > 0, got -1"
  // The settings that define the model and the data; a checkpoint must agree on them to resume.
  json::Value identity() const;
};

}  // namespace moegrad::train
