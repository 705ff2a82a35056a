#include "train/trainer.h"

#include <fmt/format.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <filesystem>

#include "core/build_info.h"
#include "core/error.h"

namespace moegrad::train {

namespace {
using Clock = std::chrono::steady_clock;

std::unique_ptr<DataSource> make_data(const TrainConfig& c, Split split) {
  if (c.task == "sequence")
    return std::make_unique<PermutedCopy>(
        PermutedCopyOptions{.vocab = c.vocab, .batch = c.batch_size, .seq = c.seq_len, .seed = c.seed, .split = split});
  return std::make_unique<ClusteredRegression>(ClusteredRegressionOptions{.dim = c.input_dim,
                                                                          .clusters = c.clusters,
                                                                          .batch = c.batch_size,
                                                                          .seq = c.seq_len,
                                                                          .seed = c.seed,
                                                                          .split = split});
}

std::unique_ptr<optim::Optimizer> make_optimizer(const TrainConfig& c, optim::NamedParameters params) {
  if (c.optimizer == "sgd") return std::make_unique<optim::SGD>(std::move(params), c.lr, c.momentum, 0.0, c.weight_decay);
  if (c.optimizer == "adam")
    return std::make_unique<optim::Adam>(std::move(params), c.lr, std::pair{0.9, 0.999}, 1e-8, c.weight_decay);
  return std::make_unique<optim::AdamW>(std::move(params), c.lr, std::pair{0.9, 0.999}, 1e-8, c.weight_decay);
}

json::Json routing_json(const std::vector<nn::moe::RoutingStats>& layers) {
  json::Json out = json::Json::array();
  for (const auto& s : layers) {
    json::Json layer;
    layer["tokens_per_expert"] = s.tokens_per_expert;
    layer["dropped_fraction"] = s.dropped_fraction;
    layer["dead_experts"] = s.dead_experts;
    layer["max_load_over_mean"] = s.max_load_over_mean;
    out.push_back(std::move(layer));
  }
  return out;
}

double value_of(const ag::Variable& v) { return core::sum(v.value()).item<double>(); }

// The run's device, checked before any work: a CUDA device must exist.
core::Device resolve_device(const std::string& text) {
  const core::Device d = core::Device::parse(text);  // validate() has checked the spelling
  if (const std::string why = core::device_unavailable(d); !why.empty()) fail("train", "--device {} but {}", d.str(), why);
  return d;
}

// A stored loss ("last_loss" attribute) read back; `fallback` when absent or unreadable.
double stored(const std::map<std::string, std::string>& attributes, const char* key, double fallback) {
  const auto it = attributes.find(key);
  if (it == attributes.end()) return fallback;
  try {
    return std::stod(it->second);
  } catch (const std::exception&) {
    return fallback;
  }
}

std::string losses(double last, double eval, double accuracy) {
  std::string s = std::isnan(last) ? "last loss unknown" : fmt::format("last loss {:.5f}", last);
  if (!std::isnan(eval)) s += fmt::format(", eval loss {:.5f}", eval);
  if (accuracy >= 0) s += fmt::format(", eval accuracy {:.3f}", accuracy);
  return s;
}

// A state dict's tensors on the host (the same tensors when they are there already).
nn::StateDict on_host(const nn::StateDict& sd) {
  nn::StateDict out;
  for (const auto& [key, t] : sd) out.insert(key, t.defined() ? core::to_device(t, core::Device::cpu()) : t);
  return out;
}
}  // namespace

Trainer::Trainer(TrainConfig config, std::FILE* log) : config_(std::move(config)), log_(log), gen_(config_.seed) {
  if (!log_) {
    null_log_.reset(std::fopen("/dev/null", "w"));
    MOEGRAD_CHECK(null_log_ != nullptr, "train", "cannot open /dev/null");
    log_ = null_log_.get();
  }
  config_.validate();
  device_ = resolve_device(config_.device);
  if (!config_.ckpt_dir.empty()) {
    // The lock first: CheckpointDir removes stale temporaries, which a live run may be writing.
    ckpt_lock_ = std::make_unique<FolderLock>(config_.ckpt_dir);
    ckpt_dir_ = std::make_unique<CheckpointDir>(config_.ckpt_dir, static_cast<int>(config_.keep_last));
  }
  // The model before the data: a model too large for the machine fails at its first
  // allocation, before the data sources build their tables (a sequence task's permutation of
  // the vocabulary, say).
  if (config_.task == "sequence")
    model_ = make_sequence_model(config_.model, config_.vocab, &gen_);
  else
    model_ = make_regression_model(config_.model, config_.input_dim, config_.input_dim, &gen_);
  // Initialised on the CPU (the same weights on every device), then moved; the optimizer's
  // state is allocated where the parameters are.
  model_->to(device_);
  optimizer_ = make_optimizer(config_, model_->named_parameters());
  schedule_ = std::make_unique<optim::WarmupCosine>(config_.lr, config_.warmup, config_.steps, config_.min_lr);
  data_ = make_data(config_, Split::train);
  eval_data_ = make_data(config_, Split::eval);
}

Trainer::~Trainer() = default;

Batch Trainer::to_device(Batch batch) const {
  for (core::Tensor* t : {&batch.x, &batch.y, &batch.group})
    if (t->defined()) *t = core::to_device(*t, device_);
  return batch;
}

Checkpoint Trainer::checkpoint(std::int64_t step) const {
  Checkpoint ck;
  ck.model = on_host(model_->state_dict());
  ck.optimizer = on_host(optimizer_->state_dict());
  ck.step = step;
  ck.cursor["train"] = data_->cursor();
  ck.rng["model"] = RngState::of(gen_);
  ck.config_json = json::dump(config_.to_json());
  ck.attributes["identity_json"] = json::dump(config_.identity());
  ck.attributes["moegrad_version"] = core::build_info().version;
  // What a re-run of a finished command reports ("{}" is the shortest exact form).
  if (!std::isnan(last_loss_)) ck.attributes["last_loss"] = fmt::format("{}", last_loss_);
  if (!std::isnan(eval_loss_)) ck.attributes["eval_loss"] = fmt::format("{}", eval_loss_);
  if (eval_accuracy_ >= 0) ck.attributes["eval_accuracy"] = fmt::format("{}", eval_accuracy_);
  return ck;
}

void Trainer::restore(const std::string& path) {
  Checkpoint ck = load_checkpoint(path);
  auto it = ck.attributes.find("identity_json");
  if (it != ck.attributes.end() && json::parse(it->second, path, "train") != config_.identity())
    fail("train", "checkpoint '{}' was written by another model or task: {} vs this run's {}", path, it->second,
         json::dump(config_.identity()));
  try {
    model_->load_state_dict(ck.model);
    optimizer_->load_state_dict(ck.optimizer);
  } catch (const Error& e) {
    fail("train", "checkpoint '{}' does not fit this model: {}", path, e.what());
  }
  MOEGRAD_CHECK(ck.cursor.count("train") && ck.rng.count("model"), "train", "checkpoint '{}' has no data cursor or generator state",
                path);
  data_->seek(ck.cursor.at("train"));
  ck.rng.at("model").restore(gen_);
  step_ = ck.step;
  last_loss_ = stored(ck.attributes, "last_loss", NAN);
  eval_loss_ = stored(ck.attributes, "eval_loss", NAN);
  eval_accuracy_ = stored(ck.attributes, "eval_accuracy", -1);
}

std::pair<double, double> Trainer::evaluate() {
  ag::NoGradGuard no_grad;
  model_->eval();
  // Evaluation must not disturb training: its draws come from a copy of the generator.
  const RngState saved = RngState::of(gen_);
  double loss = 0, acc = 0;
  eval_data_->seek(0);
  try {
    for (std::int64_t i = 0; i < config_.eval_batches; ++i) {
      ModelOutput out = model_->forward(to_device(eval_data_->next()));
      loss += value_of(out.loss);
      acc += out.accuracy;
    }
  } catch (const Error&) {
    // With --skip-nonfinite a model with NaN parameters evaluates to NaN instead of stopping.
    saved.restore(gen_);
    model_->train();
    if (!config_.skip_nonfinite) throw;
    return {NAN, NAN};
  }
  saved.restore(gen_);
  model_->train();
  const double n = static_cast<double>(config_.eval_batches);
  return {loss / n, config_.task == "sequence" ? acc / n : -1.0};
}

std::string Trainer::nonfinite_origin(const Batch& batch) {
  // Re-run the step's forward and backward with every op checked, from the same generator state.
  ag::AnomalyModeGuard anomaly;
  try {
    ModelOutput out = model_->forward(batch);
    ag::add(out.loss, out.aux_loss).backward();
  } catch (const Error& e) {
    return e.what();
  }
  return "no op produced NaN/Inf when the step was re-run (the non-finite value came from the parameters)";
}

double Trainer::train_step(std::int64_t step, StepReport& report, json::Json& record) {
  optimizer_->set_lr(schedule_->lr_at(step));
  double loss = 0, aux = 0, balance = 0, z = 0, acc = 0;
  std::int64_t tokens = 0;
  std::vector<nn::moe::RoutingStats> routing;
  const RngState before = RngState::of(gen_);
  for (std::int64_t micro = 0; micro < config_.grad_accum; ++micro) {
    const std::int64_t cursor = data_->cursor();
    Batch batch = to_device(data_->next());
    ModelOutput out;
    double l = NAN;
    bool finite = false;
    std::string failure;  // an error the forward raised (e.g. a gate refusing NaN logits)
    try {
      out = model_->forward(batch);
      ag::Variable total = ag::add(out.loss, out.aux_loss);
      if (config_.grad_accum > 1) total = ag::div(total, static_cast<double>(config_.grad_accum));
      l = value_of(out.loss);
      finite = std::isfinite(l);
      if (finite) total.backward();
      for (const auto& [name, p] : optimizer_->named_parameters()) finite = finite && core::all_finite(p.grad());
    } catch (const Error& e) {
      failure = e.what();
    }
    if (!finite) {
      // Re-run the micro-batch from the same generator state with every op checked.
      optimizer_->zero_grad();
      const RngState now = RngState::of(gen_);
      before.restore(gen_);
      data_->seek(cursor);
      const std::string origin = nonfinite_origin(to_device(data_->next()));
      now.restore(gen_);
      optimizer_->zero_grad();
      if (!failure.empty() && origin.rfind("[anomaly]", 0) != 0) throw Error(failure);  // not a NaN problem
      if (!config_.skip_nonfinite)
        fail("train", "step {}: the loss or a gradient is NaN/Inf; first op: {} (--skip-nonfinite skips such steps)",
             step + 1, origin);
      report = StepReport{};
      report.step = step + 1;
      report.total = config_.steps;
      report.loss = NAN;
      report.lr = optimizer_->lr();
      report.skipped = origin;
      record["skipped_nonfinite"] = origin;
      record["lr"] = report.lr;
      return NAN;
    }
    loss += l;
    aux += value_of(out.aux_loss);
    balance += out.balance_loss;
    z += out.router_z_loss;
    acc += out.accuracy;
    tokens += out.tokens;
    routing = out.routing;
  }
  double grad_norm = config_.clip > 0 ? optim::clip_grad_norm(optimizer_->named_parameters(), config_.clip) : -1.0;
  optimizer_->step();
  optimizer_->zero_grad();
  const double n = static_cast<double>(config_.grad_accum);
  report = {step + 1, config_.steps, loss / n, aux / n, balance / n, z / n, optimizer_->lr(), 0, 0, 0,
            config_.task == "sequence" ? acc / n : -1.0, ""};
  record["loss"] = report.loss;
  record["aux_loss"] = report.aux_loss;
  record["balance_loss"] = report.balance_loss;
  record["router_z_loss"] = report.router_z_loss;
  record["lr"] = report.lr;
  record["tokens"] = tokens;
  if (grad_norm >= 0) record["grad_norm"] = grad_norm;
  if (report.accuracy >= 0) record["accuracy"] = report.accuracy;
  record["layers"] = routing_json(routing);
  return report.loss;
}

std::vector<std::string> Trainer::checkpoints_to_replace(bool resumed) const {
  if (!ckpt_dir_) return {};
  std::vector<std::string> later;
  for (const auto& path : ckpt_dir_->list())
    if (!resumed || CheckpointDir::step_of(path).value_or(0) > step_) later.push_back(path);
  if (later.empty() || config_.overwrite) return later;
  const auto first = CheckpointDir::step_of(later.front()).value_or(0);
  const auto last = CheckpointDir::step_of(later.back()).value_or(0);
  const std::string which = later.size() == 1 ? fmt::format("a checkpoint (step {})", first)
                                              : fmt::format("{} checkpoints (steps {} to {})", later.size(), first, last);
  const char* them = later.size() == 1 ? "it" : "them";
  if (config_.resume == "none")
    fail("train", "--resume none but '{}' already holds {}: pass --overwrite to remove {} and start afresh, or "
         "--resume auto to continue", ckpt_dir_->dir(), which, them);
  fail("train", "'{}' holds {} past step {}, where this run starts, and this run would replace {}: pass --overwrite to "
       "remove {}", ckpt_dir_->dir(), which, step_, them, them);
}

MetricsFile Trainer::open_metrics(bool resumed) {
  if (config_.metrics.empty()) return {};
  MetricsFile metrics(config_.metrics);
  metrics.lock();
  if (resumed) {
    metrics.keep_until(step_);
  } else if (const auto bytes = metrics.size(); bytes > 0) {
    if (!config_.overwrite)
      fail("train", "--metrics '{}' already holds {} bytes and this run starts from step 0: pass --overwrite to "
           "replace it (a resumed run appends)", metrics.path(), bytes);
    metrics.truncate();
  }
  return metrics;
}

TrainResult Trainer::run() {
  const auto t0 = Clock::now();
  TrainResult result;
  // The locks are this run's: a Trainer may outlive its run (tests, the examples).
  struct Release {
    Trainer& t;
    ~Release() { t.ckpt_lock_.reset(); }
  } release{*this};
  if (!config_.ckpt_dir.empty() && !ckpt_lock_) ckpt_lock_ = std::make_unique<FolderLock>(config_.ckpt_dir);
  // Resume.
  std::string from;
  if (config_.resume == "auto") {
    if (ckpt_dir_) from = ckpt_dir_->latest().value_or("");
  } else if (config_.resume != "none") {
    from = config_.resume;
  }
  if (!from.empty()) {
    restore(from);
    result.resumed_from = from;
  }
  result.start_step = step_;
  result.steps = config_.steps;
  const std::int64_t end = config_.stop_at > 0 ? config_.stop_at : config_.steps;
  result.last_step = end;
  // Every refusal comes before any change (and before the start-up lines, so that a refused run
  // prints one line): checkpoints past the start, then the metrics file.
  const std::vector<std::string> replaced = checkpoints_to_replace(!from.empty());
  MetricsFile metrics = open_metrics(!from.empty());
  fmt::print(log_, "config: {}\n", json::dump(config_.to_json()));
  std::string model_line = fmt::format("model: {} parameters, {} active per token", model_->num_parameters(),
                                       model_->active_parameters());
  if (config_.model.kind == "dense")
    model_line += fmt::format(" (the st_moe model of these options: {}, difference {:+})",
                              model_->st_moe_active_parameters(),
                              model_->active_parameters() - model_->st_moe_active_parameters());
  fmt::print(log_, "{}; data: {}\n", model_line, data_->describe());
  if (const std::string note = capacity_factor_note(config_.model, config_.seq_len); !note.empty())
    fmt::print(log_, "{}\n", note);
  if (!from.empty()) fmt::print(log_, "resumed from {} at step {}\n", from, step_);
  if (metrics.is_open() && metrics.dropped() > 0)
    fmt::print(log_, "metrics: dropped {} line(s) past step {} from '{}' (this run writes them again)\n",
               metrics.dropped(), step_, metrics.path());
  if (!replaced.empty()) {
    for (const auto& path : replaced) {
      std::error_code ec;
      if (!std::filesystem::remove(path, ec) && ec) fail("train", "--overwrite: cannot remove '{}': {}", path, ec.message());
    }
    fmt::print(log_, "--overwrite: removed {} checkpoint(s) from '{}'\n", replaced.size(), ckpt_dir_->dir());
  }
  result.metrics = config_.metrics;
  if (step_ >= end) {
    result.nothing_to_do = true;
    result.end_step = step_;
    result.last_loss = last_loss_;
    result.eval_loss = eval_loss_;
    result.eval_accuracy = eval_accuracy_;
    result.wall_s = std::chrono::duration<double>(Clock::now() - t0).count();
    return result;
  }
  const bool interactive = config_.progress && isatty(fileno(log_));
  Progress progress(log_, interactive, config_.log_every);
  auto save = [&](std::int64_t step) {
    if (!ckpt_dir_) return;
    result.last_checkpoint = ckpt_dir_->save(checkpoint(step));
    progress.message(fmt::format("checkpoint {}", result.last_checkpoint));
  };

  double ms_avg = 0;
  while (step_ < end) {
    const auto s0 = Clock::now();
    StepReport report;
    json::Json record = {{"step", step_ + 1}};
    const double loss = train_step(step_, report, record);
    if (report.skipped.empty()) {
      last_loss_ = loss;
    } else {
      ++result.skipped_steps;
    }
    ++step_;
    const double ms = std::chrono::duration<double, std::milli>(Clock::now() - s0).count();
    ms_avg = ms_avg == 0 ? ms : 0.9 * ms_avg + 0.1 * ms;
    const double tokens = static_cast<double>(config_.batch_size * config_.seq_len * config_.grad_accum);
    report.ms_per_step = ms_avg;
    report.tokens_per_s = tokens / (ms_avg / 1000.0);
    report.eta_s = static_cast<double>(end - step_) * ms_avg / 1000.0;
    progress.update(report);
    // The final evaluation is at --steps, not at --stop-at, so a stopped run logs what the
    // uninterrupted one logs.
    const bool eval_now = step_ == config_.steps || (config_.eval_every > 0 && step_ % config_.eval_every == 0);
    if (eval_now) {
      auto [el, ea] = evaluate();
      eval_loss_ = el;
      eval_accuracy_ = ea;
      record["eval_loss"] = el;
      if (ea >= 0) record["eval_accuracy"] = ea;
      progress.message(ea >= 0 ? fmt::format("eval at step {}: loss {:.5f}, accuracy {:.3f}", step_, el, ea)
                               : fmt::format("eval at step {}: loss {:.5f}", step_, el));
    }
    record["ms_per_step"] = ms;
    if (metrics.is_open() && (step_ % config_.log_every == 0 || step_ == config_.steps || eval_now)) metrics.write(record);
    if (step_ % config_.ckpt_every == 0 || step_ == end) save(step_);
  }
  progress.finish();
  result.end_step = step_;
  result.last_loss = last_loss_;
  result.eval_loss = eval_loss_;
  result.eval_accuracy = eval_accuracy_;
  result.wall_s = std::chrono::duration<double>(Clock::now() - t0).count();
  const std::int64_t ran = result.end_step - result.start_step;
  if (result.skipped_steps == ran)
    fail("train", "every step of this run ({} of {}, steps {} to {}) was skipped as non-finite (--skip-nonfinite): "
         "nothing was trained", ran, ran, result.start_step + 1, result.end_step);
  return result;
}

std::string TrainResult::summary() const {
  std::string s;
  if (nothing_to_do) {
    const std::string where =
        end_step == last_step
            ? (last_step == steps ? fmt::format("at its last step (step {} of {})", end_step, steps)
                                  : fmt::format("at --stop-at {} (of --steps {})", end_step, steps))
            : fmt::format("at step {}, past its last step {}", end_step, last_step);
    s = fmt::format("nothing to do: the run is already {}; stored: {}", where, losses(last_loss, eval_loss, eval_accuracy));
  } else {
    s = fmt::format("done: steps {}..{} in {:.1f} s, {}", start_step, end_step, wall_s,
                    losses(last_loss, eval_loss, eval_accuracy));
    if (skipped_steps > 0) s += fmt::format(", {} step(s) skipped as non-finite", skipped_steps);
  }
  if (!last_checkpoint.empty()) s += fmt::format("\ncheckpoint: {}", last_checkpoint);
  else if (nothing_to_do && !resumed_from.empty()) s += fmt::format("\ncheckpoint: {}", resumed_from);
  if (!metrics.empty()) s += fmt::format("\nmetrics: {}", metrics);
  return s;
}

}  // namespace moegrad::train
