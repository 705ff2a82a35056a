// The configuration of a training run: what `moegrad train` resolves from its flags and an
// optional --config FILE.json, prints once at start-up, and stores in every checkpoint
// (config_json). JSON keys are the flag names with '_' for '-'.
//
// One table in config.cpp (fields()) lists every option once: its key, help, and the range or
// choices its value must be in. It drives the command line (TrainConfig::options()), the JSON
// reading (from_json) and validate(), so a flag and a config-file value get the same check.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "train/json_read.h"
#include "train/models.h"

namespace moegrad::train {

struct TrainConfig {
  TrainConfig() {  // the default run: 16 small experts on 16 clusters (scripts/demo)
    model.experts = 16;
    model.hidden = 32;
  }
  // task and model
  std::string task = "clustered-regression";  // "sequence", "tensors" (train/tensor_data.h) or "text"
  std::string train_data, eval_data;          // tensors: HDF5 files
  std::string text, eval_text;                 // text: byte files (train/text_data.h)
  std::string data_kind = "auto";              // tensors: auto, regression or tokens (resolved from the file)
  ModelOptions model;                          // --model, --experts, --top-n, ...
  std::int64_t input_dim = 16;                 // regression input width
  std::int64_t output_dim = 0;                 // regression output width; 0 = input_dim
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
  std::int64_t warmup = 20;         // from_json without "warmup": min(20, steps / 10)
  double min_lr = 0.0;
  double clip = 1.0;                // global grad-norm clip; 0 = off
  std::int64_t grad_accum = 1;
  bool skip_nonfinite = false;
  std::uint64_t seed = 0;
  std::string device = "cpu";       // cpu, cuda or cuda:N (the model, batches, optimizer state)
  std::string precision = "fp32";   // GEMM precision: fp32 or bf16 (core/precision.h)
  // evaluation, logging, checkpoints
  std::int64_t eval_every = 200;    // 0 = only at the end
  std::int64_t eval_batches = 4;
  std::int64_t log_every = 10;
  bool progress = true;             // redraw one line on a terminal
  std::string metrics;              // JSONL path; "" = none
  std::string tensorboard;          // event-file folder (train/tensorboard.h); "" = none
  std::string ckpt_dir;             // "" = no checkpoints
  std::int64_t ckpt_every = 250;
  std::int64_t keep_last = 3;
  std::string resume = "auto";      // auto, none, or a checkpoint path
  std::int64_t stop_at = 0;         // > 0: end after this step with a checkpoint
  bool overwrite = false;           // may remove checkpoints past the start and empty a fresh run's metrics
  // distributed: the world size W is the MPI job's; --batch-size is one rank's micro-batch, so a
  // step takes W x grad_accum micro-batches. Neither is part of identity(): a run may resume at
  // another world size.
  std::int64_t expert_parallel = 1;  // P
  double collective_timeout = 300;   // seconds

  // Not options. Whether from_json was given "vocab" (tensors: the vocabulary is the data's
  // unless a larger one is given), and what identity() stores of --train-data (the Trainer sets
  // it from the file: kind, shapes, content digest), so a changed file is not resumed.
  bool vocab_given = true;
  json::Json data_identity;

  // A token model (embedding, logits, cross-entropy and accuracy): sequence, text, or tensors of tokens.
  bool token_task() const;

  json::Json to_json() const;  // every key, in the table's order
  // Keys not given keep their defaults (warmup: min(20, steps / 10)); unknown keys, wrong
  // kinds and values out of range throw "[config] 'source': 'steps': must be >= 1, got 0"
  // (source: the file the object came from, "" for none). Then validate().
  static TrainConfig from_json(const json::Json& v, const std::string& source = "");
  // Every value in its range, and the checks across options (--warmup <= --steps,
  // --min-lr <= --lr, ...): "[config] --lr must be > 0, got -1".
  void validate() const;
  // The settings that define the model and the data; a checkpoint must agree on them to resume.
  json::Json identity() const;

  // One option of the table, for the command line: flag "--" + key with '-' for '_'.
  struct Option {
    enum class Kind { boolean, integer, number, text };
    std::string key, flag, group, help;
    Kind kind;
    std::string range;          // "[1, 999999999]", "(0, 1e+06]", "st_moe|lucidrains|..."; "" = any
    std::string default_value;  // TrainConfig{}'s value as JSON
  };
  static const std::vector<Option>& options();
  // The JSON value of option `key` given as command-line text ("1e3" for an integer is 1000),
  // checked like a config-file value: throws "[config] --keep-last must be <= 1000000, got ...".
  static json::Json option_value(const std::string& key, const std::string& text);
};

// Command-line text to a number, read and checked as config values are ("1e3" is an integer,
// "1.5" is not; non-finite numbers are rejected): throws "[config] --steps must be >= 1, got 0".
// For the examples' flags and `moegrad layer`.
std::int64_t parse_integer(const std::string& flag, const std::string& text, std::int64_t lo, std::int64_t hi);
std::uint64_t parse_unsigned(const std::string& flag, const std::string& text);
double parse_number(const std::string& flag, const std::string& text, double lo, double hi);

}  // namespace moegrad::train
