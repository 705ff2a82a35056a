#include "train/config.h"

#include <set>

#include "core/device.h"
#include "core/error.h"

namespace moegrad::train {

namespace {
constexpr const char* kOp = "config";

// Every field once, by JSON key: one table drives to_json and from_json.
template <class Visit>
void fields(TrainConfig& c, Visit&& v) {
  v("task", c.task);
  v("model", c.model.kind);
  v("dim", c.model.dim);
  v("hidden", c.model.hidden);
  v("experts", c.model.experts);
  v("experts_outer", c.model.experts_outer);
  v("top_n", c.model.top_n);
  v("layers", c.model.layers);
  v("capacity_factor", c.model.capacity_factor);
  v("dropless", c.model.dropless);
  v("noise_gates", c.model.noise_gates);
  v("noise_mult", c.model.noise_mult);
  v("balance_loss_coef", c.model.balance_loss_coef);
  v("router_z_loss_coef", c.model.router_z_loss_coef);
  v("input_dim", c.input_dim);
  v("clusters", c.clusters);
  v("vocab", c.vocab);
  v("seq_len", c.seq_len);
  v("batch_size", c.batch_size);
  v("steps", c.steps);
  v("optimizer", c.optimizer);
  v("lr", c.lr);
  v("weight_decay", c.weight_decay);
  v("momentum", c.momentum);
  v("warmup", c.warmup);
  v("min_lr", c.min_lr);
  v("clip", c.clip);
  v("grad_accum", c.grad_accum);
  v("skip_nonfinite", c.skip_nonfinite);
  v("seed", c.seed);
  v("device", c.device);
  v("eval_every", c.eval_every);
  v("eval_batches", c.eval_batches);
  v("log_every", c.log_every);
  v("progress", c.progress);
  v("metrics", c.metrics);
  v("ckpt_dir", c.ckpt_dir);
  v("ckpt_every", c.ckpt_every);
  v("keep_last", c.keep_last);
  v("resume", c.resume);
  v("stop_at", c.stop_at);
  v("overwrite", c.overwrite);
}

template <class T>
void read(const json::Value& v, T& out) {
  if constexpr (std::is_same_v<T, bool>) out = v.as_bool();
  else if constexpr (std::is_same_v<T, std::string>) out = v.as_string();
  else if constexpr (std::is_same_v<T, double>) out = v.as_double();
  else if constexpr (std::is_same_v<T, std::uint64_t>) {
    const auto i = v.as_int();
    MOEGRAD_CHECK(i >= 0, kOp, "'{}' must be >= 0, got {}", v.path(), i);
    out = static_cast<std::uint64_t>(i);
  } else out = v.as_int();
}
}  // namespace

json::Value TrainConfig::to_json() const {
  json::Value out = json::Value::object();
  TrainConfig copy = *this;
  fields(copy, [&](const char* key, const auto& value) {
    using T = std::decay_t<decltype(value)>;
    if constexpr (std::is_same_v<T, std::uint64_t>) out.set(key, static_cast<std::int64_t>(value));
    else out.set(key, value);
  });
  return out;
}

TrainConfig TrainConfig::from_json(const json::Value& v) {
  MOEGRAD_CHECK(v.is_object(), kOp, "a configuration must be a JSON object, got {}", json::dump(v));
  TrainConfig c;
  std::set<std::string> known;
  fields(c, [&](const char* key, auto& value) {
    known.insert(key);
    if (const json::Value* given = v.find(key)) read(*given, value);
  });
  for (const auto& [key, value] : v.as_object())
    if (!known.count(key)) fail(kOp, "unknown key '{}'", key);
  return c;
}

void TrainConfig::validate() const {
  MOEGRAD_CHECK(task == "clustered-regression" || task == "sequence", kOp,
                "--task must be clustered-regression or sequence, got '{}'", task);
  check_model_options(model);
  MOEGRAD_CHECK(optimizer == "sgd" || optimizer == "adam" || optimizer == "adamw", kOp,
                "--optimizer must be sgd, adam or adamw, got '{}'", optimizer);
  MOEGRAD_CHECK(lr > 0, kOp, "--lr must be > 0, got {}", lr);
  MOEGRAD_CHECK(steps > 0, kOp, "--steps must be > 0, got {}", steps);
  MOEGRAD_CHECK(batch_size > 0 && seq_len > 0, kOp, "--batch-size and --seq-len must be > 0, got {} and {}", batch_size,
                seq_len);
  MOEGRAD_CHECK(warmup >= 0 && warmup <= steps, kOp, "--warmup must be in [0, --steps = {}], got {}", steps, warmup);
  MOEGRAD_CHECK(clip >= 0, kOp, "--clip must be >= 0, got {}", clip);
  MOEGRAD_CHECK(grad_accum >= 1, kOp, "--grad-accum must be >= 1, got {}", grad_accum);
  MOEGRAD_CHECK(log_every >= 1, kOp, "--log-every must be >= 1, got {}", log_every);
  MOEGRAD_CHECK(ckpt_every >= 1, kOp, "--ckpt-every must be >= 1, got {}", ckpt_every);
  MOEGRAD_CHECK(keep_last >= 0, kOp, "--keep-last must be >= 0, got {}", keep_last);
  MOEGRAD_CHECK(eval_every >= 0 && eval_batches >= 1, kOp, "--eval-every must be >= 0 and --eval-batches >= 1");
  MOEGRAD_CHECK(stop_at >= 0 && stop_at <= steps, kOp, "--stop-at must be in [0, --steps = {}], got {}", steps, stop_at);
  MOEGRAD_CHECK(input_dim > 0 && clusters > 0 && vocab >= 2, kOp, "--input-dim, --clusters must be > 0, --vocab >= 2");
  try {
    core::Device::parse(device);
  } catch (const Error&) {
    fail(kOp, "--device must be cpu, cuda or cuda:N, got '{}'", device);
  }
  MOEGRAD_CHECK(resume == "auto" || resume == "none" || !resume.empty(), kOp, "--resume must be auto, none or a path");
  if (stop_at > 0 && ckpt_dir.empty()) fail(kOp, "--stop-at needs --ckpt-dir (it ends the run with a checkpoint)");
}

json::Value TrainConfig::identity() const {
  json::Value all = to_json();
  json::Value out = json::Value::object();
  for (const char* key : {"task", "model", "dim", "hidden", "experts", "experts_outer", "top_n", "layers", "input_dim",
                          "clusters", "vocab", "seq_len", "batch_size", "seed", "optimizer"})
    out.set(key, all.at(key));
  return out;
}

}  // namespace moegrad::train
