#include "train/trainer.h"

#include "core/precision.h"

#include <fmt/format.h>
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <cstdlib>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>

#include "core/build_info.h"
#include "core/error.h"
#include "core/kernels/philox.h"
#include "core/precision.h"
#include "dist/world.h"
#include "layers/moe/moe_layer.h"
#include "train/inference.h"
#include "train/tensor_data.h"
#include "train/text_data.h"
#include "train/tensorboard.h"

namespace moegrad::train {

namespace {
using Clock = std::chrono::steady_clock;

std::unique_ptr<DataSource> make_data(const TrainConfig& c, Split split) {
  if (c.task == "sequence")
    return std::make_unique<PermutedCopy>(
        PermutedCopyOptions{.vocab = c.vocab, .batch = c.batch_size, .seq = c.seq_len, .seed = c.seed, .split = split});
  return std::make_unique<ClusteredRegression>(ClusteredRegressionOptions{.dim = c.input_dim,
                                                                          .out_dim = c.output_dim,
                                                                          .clusters = c.clusters,
                                                                          .batch = c.batch_size,
                                                                          .seq = c.seq_len,
                                                                          .seed = c.seed,
                                                                          .split = split});
}

// --task tensors: reads and checks --train-data (and --eval-data), and sets the options the files
// decide: the widths, the sequence length, the vocabulary, and the data's part of identity().
struct TensorFiles {
  std::shared_ptr<const TensorData> train, eval;  // eval: --eval-data, or the training file
};
TensorFiles open_tensor_files(TrainConfig& c) {
  TensorFiles f;
  f.train = load_tensor_data(c.train_data, "--train-data");
  f.eval = c.eval_data.empty() ? f.train : load_tensor_data(c.eval_data, "--eval-data");
  const TensorData &t = *f.train, &e = *f.eval;
  const char* found = t.kind == TensorData::Kind::tokens ? "tokens" : "regression";
  if (c.data_kind != "auto" && c.data_kind != found)
    fail("data", "--data-kind {} but --train-data '{}' holds {}", c.data_kind, t.path,
         t.kind == TensorData::Kind::tokens ? "tokens" : "regression data (x, y)");
  c.data_kind = found;
  if (e.kind != t.kind)
    fail("data", "--eval-data '{}' holds {} but --train-data '{}' holds {}", e.path,
         e.kind == TensorData::Kind::tokens ? "tokens" : "regression data (x, y)", t.path,
         t.kind == TensorData::Kind::tokens ? "tokens" : "regression data (x, y)");
  c.seq_len = t.seq();
  if (t.kind == TensorData::Kind::regression) {
    if (e.in_dim() != t.in_dim() || e.out_dim() != t.out_dim())
      fail("data", "--eval-data '{}' has widths x {} -> y {} but --train-data '{}' has {} -> {}", e.path, e.in_dim(),
           e.out_dim(), t.path, t.in_dim(), t.out_dim());
    c.input_dim = t.in_dim();
    c.output_dim = t.out_dim();
  } else {
    const std::int64_t largest = std::max(t.max_token, e.max_token);
    if (c.vocab_given) {
      t.check_vocab(c.vocab, fmt::format("--vocab {}", c.vocab));
      e.check_vocab(c.vocab, fmt::format("--vocab {}", c.vocab));
    } else {
      c.vocab = std::max<std::int64_t>(2, largest + 1);
    }
  }
  c.data_identity = t.identity();
  return f;
}
// --task text: reads --text (and --eval-text) and makes the two window streams. Without
// --eval-text the last 10% of --text is held out for evaluation (at least one window's bytes,
// and training draws from the rest). The vocabulary is 256 (bytes); the file is part of identity().
struct TextSources {
  std::unique_ptr<DataSource> train, eval;
  std::string note;
};
TextSources open_text_sources(TrainConfig& c) {
  TextSources s;
  const auto text = load_text(c.text, "--text");
  c.vocab = 256;
  c.data_identity = text->identity();
  const TextWindowsOptions base{.batch = c.batch_size, .seq = c.seq_len, .seed = c.seed};
  if (!c.eval_text.empty()) {
    const auto eval = load_text(c.eval_text, "--eval-text");
    s.train = std::make_unique<TextWindows>(text, base, fmt::format("--text '{}'", c.text));
    TextWindowsOptions e = base;
    e.split = Split::eval;
    s.eval = std::make_unique<TextWindows>(eval, e, fmt::format("--eval-text '{}'", c.eval_text));
    s.note = fmt::format("eval data: {} fixed batches of windows from --eval-text '{}'", c.eval_batches, c.eval_text);
    return s;
  }
  const std::int64_t n = text->size(), held = std::max<std::int64_t>(n / 10, c.seq_len + 1);
  if (n - held < c.seq_len + 1)
    fail("data", "--text '{}' has {} bytes: too short to hold out an evaluation part and train on the rest (each needs "
         "one window of --seq-len + 1 = {} bytes; give --eval-text or a longer file)", c.text, n, c.seq_len + 1);
  TextWindowsOptions t = base, e = base;
  t.end = e.begin = n - held;
  e.split = Split::eval;
  s.train = std::make_unique<TextWindows>(text, t, fmt::format("--text '{}'", c.text));
  s.eval = std::make_unique<TextWindows>(text, e, fmt::format("--text '{}' (its held-out end)", c.text));
  s.note = fmt::format("eval data: {} fixed batches of windows from the last {} bytes of --text '{}', held out from "
                       "training (no --eval-text given)", c.eval_batches, held, c.text);
  return s;
}

// Tokens that one MoE routing group holds: a sequence, or a batch of a 2-d regression file's rows.
std::int64_t group_size(const TrainConfig& c) {
  return c.task == "tensors" && c.seq_len == 1 ? c.batch_size : c.seq_len;
}

std::unique_ptr<optim::Optimizer> make_optimizer(const TrainConfig& c, optim::NamedParameters params) {
  if (c.optimizer == "sgd") return std::make_unique<optim::SGD>(std::move(params), c.lr, c.momentum, 0.0, c.weight_decay);
  if (c.optimizer == "adam")
    return std::make_unique<optim::Adam>(std::move(params), c.lr, std::pair{0.9, 0.999}, 1e-8, c.weight_decay);
  return std::make_unique<optim::AdamW>(std::move(params), c.lr, std::pair{0.9, 0.999}, 1e-8, c.weight_decay);
}

json::Json routing_json(const std::vector<nn::moe::RoutingStats>& layers) {
  json::Json out = json::Json::array();
  for (const auto& s : layers) out.push_back(routing_stats_json(s, /*with_counts=*/false));
  return out;
}

double value_of(const ag::Variable& v) { return core::sum(v.value()).item<double>(); }

// The run's device, checked before any work: a CUDA device must exist. With several ranks,
// "cuda" (no index) means one GPU per rank on each node: local rank i takes cuda:(i mod GPUs),
// so ranks share GPUs only when there are more ranks than GPUs.
core::Device resolve_device(const std::string& text, const Parallel& par) {
  core::Device d = core::Device::parse(text);  // validate() has checked the spelling
  if (d.is_cuda() && text == "cuda" && par.distributed()) {
    const int local = dist::launched_local_rank(), gpus = core::build_info().cuda_devices;
    if (gpus > 0) d = core::Device::cuda((local >= 0 ? local : par.rank()) % gpus);
  }
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

std::string losses(double last, double eval, double accuracy, bool bits_per_byte) {
  std::string s = std::isnan(last) ? "last loss unknown" : fmt::format("last loss {:.5f}", last);
  if (!std::isnan(eval)) s += fmt::format(", eval loss {:.5f}", eval);
  if (accuracy >= 0) s += fmt::format(", eval accuracy {:.3f}", accuracy);
  if (bits_per_byte && !std::isnan(eval)) s += fmt::format(", eval {:.4f} bits per byte", eval / std::log(2.0));
  return s;
}

// Fault injection for the tests of a job that loses a rank: MOEGRAD_FAULT_SIGNAL=KILL:R:S (or
// STOP:R:S) makes world rank R send itself SIGKILL (SIGSTOP) as step S begins.
void inject_fault(int rank, std::int64_t step) {
  const char* spec = std::getenv("MOEGRAD_FAULT_SIGNAL");
  if (!spec) return;
  char kind[8] = {};
  int r = -1;
  long long s = -1;
  if (std::sscanf(spec, "%7[A-Z]:%d:%lld", kind, &r, &s) != 3 || r != rank || s != step) return;
  const std::string k = kind;
  if (k == "KILL" || k == "STOP") ::kill(::getpid(), k == "KILL" ? SIGKILL : SIGSTOP);
}

}  // namespace

Trainer::Trainer(TrainConfig config, std::FILE* log) : config_(std::move(config)), log_(log), gen_(config_.seed) {
  if (!log_) {
    null_log_.reset(std::fopen("/dev/null", "w"));
    MOEGRAD_CHECK(null_log_ != nullptr, "train", "cannot open /dev/null");
    log_ = null_log_.get();
  }
  dist::set_collective_timeout(config_.collective_timeout);
  par_ = std::make_unique<Parallel>(config_.expert_parallel);  // joins the MPI job when launched by mpirun
  if (!par_->writer()) {  // rank 0 speaks for the job
    null_log_.reset(std::fopen("/dev/null", "w"));
    MOEGRAD_CHECK(null_log_ != nullptr, "train", "cannot open /dev/null");
    log_ = null_log_.get();
  }
  // Each stage is agreed on (Parallel::agree): an error on any rank stops every rank with the
  // same message, told once.
  par_->agree([&] { config_.validate(); });
  // Ranks that disagree on the run would compute different things: refuse at start.
  par_->agree([&] { check_same_config(); });
  par_->agree([&] {
    device_ = resolve_device(config_.device, *par_);
    if (!config_.ckpt_dir.empty() && par_->writer()) {
      // The lock first: CheckpointDir removes stale temporaries, which a live run may be writing.
      ckpt_lock_ = std::make_unique<FolderLock>(config_.ckpt_dir);
      ckpt_dir_ = std::make_unique<CheckpointDir>(config_.ckpt_dir, static_cast<int>(config_.keep_last));
    }
    // The model before the data: a model too large for the machine fails at its first
    // allocation, before the data sources build their tables (a sequence task's permutation of
    // the vocabulary, say). Except the user's files, which decide the model's widths.
    TensorFiles files;
    if (config_.task == "tensors") files = open_tensor_files(config_);
    TextSources text;
    if (config_.task == "text") text = open_text_sources(config_);
    model_ = build_model(&gen_);
    // Initialised whole on the CPU (the same weights on every device and every rank), then each
    // rank keeps its experts and moves to the device; the optimizer's state is allocated where
    // the parameters are.
    par_->place_experts(model_);
    model_->to(device_);
    optimizer_ = make_optimizer(config_, model_->named_parameters());
    schedule_ = std::make_unique<optim::WarmupCosine>(config_.lr, config_.warmup, config_.steps, config_.min_lr);
    if (files.train) {
      data_ = std::make_unique<ShuffledTensors>(files.train, ShuffledTensorsOptions{config_.batch_size, config_.seed});
      auto eval = std::make_unique<OrderedTensors>(files.eval, config_.batch_size);
      const std::int64_t available = eval->batches();
      config_.eval_batches = std::min(config_.eval_batches, available);
      const bool all = config_.eval_batches == available;
      const std::int64_t short_rows = files.eval->rows() % config_.batch_size;
      eval_note_ = fmt::format(
          "eval data: {} {} batches of {} rows of {}, in file order{}", all ? "all" : "the first", config_.eval_batches,
          config_.batch_size,
          config_.eval_data.empty() ? "--train-data (no --eval-data given)" : "--eval-data '" + config_.eval_data + "'",
          all && short_rows != 0 ? fmt::format(" (the last of {} rows)", short_rows) : "");
      eval_data_ = std::move(eval);
    } else if (text.train) {
      data_ = std::move(text.train);
      eval_data_ = std::move(text.eval);
      eval_note_ = text.note;
    } else {
      data_ = make_data(config_, Split::train);
      eval_data_ = make_data(config_, Split::eval);
    }
  });
}

void Trainer::check_same_config() const {
  if (!par_->distributed()) return;
  const json::Json mine = config_.to_json();
  try {
    dist::check_same(par_->world(), "the configuration", json::dump(mine));
  } catch (const Error& e) {
    // Every rank is here. Those that differ from rank 0 name their first differing option (the
    // lowest of them speaks, Parallel::agree); the others have nothing to add.
    const json::Json first = json::parse(dist::broadcast_string(par_->world(), json::dump(mine), 0), "rank 0", "train");
    if (first == mine) return;
    for (const auto& [key, value] : mine.items())
      if (!first.contains(key) || first.at(key) != value) {
        std::string flag = "--" + key;
        std::replace(flag.begin(), flag.end(), '_', '-');
        fail("train", "the ranks disagree on the configuration: rank {} has {} {}, rank 0 has {}", par_->rank(), flag,
             json::dump(value), first.contains(key) ? json::dump(first.at(key)) : "nothing");
      }
    throw e;
  }
}

Trainer::~Trainer() = default;

std::shared_ptr<TaskModel> Trainer::build_model(core::Generator* gen) const { return make_task_model(config_, gen); }

Batch Trainer::micro_batch(std::int64_t index) {
  data_->seek(index);
  gen_.manual_seed(draw_seed(config_.seed, 0, index));
  return to_device(data_->next());
}

Batch Trainer::to_device(Batch batch) const {
  for (core::Tensor* t : {&batch.x, &batch.y, &batch.group})
    if (t->defined()) *t = core::to_device(*t, device_);
  return batch;
}

Checkpoint Trainer::checkpoint(std::int64_t step) {
  Checkpoint ck;
  std::tie(ck.model, ck.optimizer) = par_->full_state(*model_, *optimizer_, [this] {
    core::Generator scratch(config_.seed);
    return std::shared_ptr<nn::Module>(build_model(&scratch));
  });
  ck.step = step;
  ck.cursor["train"] = cursor_;
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
    // format_version 2 keyed the optimizer state by parameter name; it is read as it is.
    par_->load_full_state(
        *model_, *optimizer_, ck.model, ck.optimizer,
        [this] {
          core::Generator scratch(config_.seed);
          return std::shared_ptr<nn::Module>(build_model(&scratch));
        },
        /*internal_names=*/ck.format_version == 2);
  } catch (const Error& e) {
    fail("train", "checkpoint '{}' does not fit this model: {}", path, e.what());
  }
  MOEGRAD_CHECK(ck.cursor.count("train") && ck.rng.count("model"), "train", "checkpoint '{}' has no data cursor or generator state",
                path);
  cursor_ = ck.cursor.at("train");
  MOEGRAD_CHECK(cursor_ >= 0, "train", "checkpoint '{}' has a negative data cursor {}", path, cursor_);
  ck.rng.at("model").restore(gen_);
  step_ = ck.step;
  last_loss_ = stored(ck.attributes, "last_loss", NAN);
  eval_loss_ = stored(ck.attributes, "eval_loss", NAN);
  eval_accuracy_ = stored(ck.attributes, "eval_accuracy", -1);
}

std::pair<double, double> Trainer::evaluate() {
  ag::NoGradGuard no_grad;
  model_->eval();
  // Evaluation must not disturb training: its draws come from their own stream (batch i's
  // from (seed, 1, i)), and the generator is put back.
  const RngState saved = RngState::of(gen_);
  // The ranks share the batches: in round j rank r takes batch j W + r. Every rank runs every
  // round (expert parallelism needs all of them in each forward); past the last batch a rank
  // runs the last one again and does not count it.
  const std::int64_t w = par_->world_size(), batches = config_.eval_batches;
  double sums[2] = {0, 0};  // loss, accuracy
  try {
    for (std::int64_t round = 0; round * w < batches; ++round) {
      const std::int64_t index = round * w + par_->rank();
      eval_data_->seek(std::min(index, batches - 1));
      gen_.manual_seed(draw_seed(config_.seed, 1, std::min(index, batches - 1)));
      ModelOutput out = model_->forward(to_device(eval_data_->next()));
      if (index >= batches) continue;
      sums[0] += value_of(out.loss);
      sums[1] += out.accuracy;
    }
  } catch (const Error&) {
    // With --skip-nonfinite a model with NaN parameters evaluates to NaN instead of stopping.
    saved.restore(gen_);
    model_->train();
    if (!config_.skip_nonfinite || par_->distributed()) throw;
    return {NAN, NAN};
  }
  saved.restore(gen_);
  model_->train();
  if (par_->distributed()) {
    core::Tensor t = core::from_vector(std::vector<double>{sums[0], sums[1]}, {2});
    par_->world().all_reduce(t);
    const std::vector<double> v = t.to_vector<double>();
    sums[0] = v[0];
    sums[1] = v[1];
  }
  const double n = static_cast<double>(batches);
  return {sums[0] / n, config_.token_task() ? sums[1] / n : -1.0};
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

void Trainer::reduce_report(double* sums, std::size_t n, std::vector<nn::moe::RoutingStats>& routing) {
  if (!par_->distributed()) return;
  // One all-reduce: the figures, then each layer's kept and routed counts per expert.
  std::vector<double> all(sums, sums + n);
  for (const auto& s : routing) {
    all.insert(all.end(), s.tokens_per_expert.begin(), s.tokens_per_expert.end());
    all.insert(all.end(), s.routed_per_expert.begin(), s.routed_per_expert.end());
  }
  core::Tensor t = core::from_vector(all);
  par_->world().all_reduce(t);
  all = t.to_vector<double>();
  std::copy(all.begin(), all.begin() + static_cast<std::ptrdiff_t>(n), sums);
  std::size_t at = n;
  for (auto& s : routing) {
    for (auto& v : s.tokens_per_expert) v = static_cast<std::int64_t>(all[at++]);
    for (auto& v : s.routed_per_expert) v = static_cast<std::int64_t>(all[at++]);
    s = nn::moe::routing_stats(std::move(s.tokens_per_expert), std::move(s.routed_per_expert));
  }
}

double Trainer::train_step(std::int64_t step, StepReport& report, json::Json& record) {
  optimizer_->set_lr(schedule_->lr_at(step));
  // This rank's micro-batches of the step: global indices cursor_ + rank * A + a.
  const std::int64_t accum = config_.grad_accum, per_step = par_->world_size() * accum;
  double loss = 0, aux = 0, balance = 0, z = 0, acc = 0, tokens = 0;
  std::vector<nn::moe::RoutingStats> routing;
  for (std::int64_t micro = 0; micro < accum; ++micro) {
    const std::int64_t index = cursor_ + par_->rank() * accum + micro;
    Batch batch = micro_batch(index);
    ModelOutput out;
    double l = NAN;
    bool finite = false;
    std::string failure;  // an error the forward raised (e.g. a gate refusing NaN logits)
    try {
      out = model_->forward(batch);
      ag::Variable total = ag::add(out.loss, out.aux_loss);
      if (per_step > 1) total = ag::div(total, static_cast<double>(per_step));
      l = value_of(out.loss);
      finite = std::isfinite(l);
      if (finite) total.backward();
      for (const auto& [name, p] : optimizer_->named_parameters()) finite = finite && core::all_finite(p.grad());
    } catch (const Error& e) {
      failure = e.what();
    }
    // With several ranks a forward that fails half-way leaves the others in a collective: only
    // the whole job can stop.
    if (!failure.empty() && par_->distributed())
      dist::abort_job(fmt::format("moegrad train: [rank {}] step {}: {}", par_->rank(), step + 1, failure));
    // Every rank takes the same branch: the step is skipped (or stopped) everywhere or nowhere.
    if (par_->distributed())
      finite = dist::all_reduce_value(par_->world(), std::int64_t{finite}, dist::Reduction::min) != 0;
    if (!finite) {
      // Re-run the micro-batch from the same generator state with every op checked (one
      // process, or data parallelism only: a rank stopped by the check half-way through an
      // expert-parallel forward would leave the others in its exchange).
      optimizer_->zero_grad();
      std::string origin = "not searched (expert parallelism: re-run the step in one process to find the op)";
      if (!par_->sharded()) origin = nonfinite_origin(micro_batch(index));
      optimizer_->zero_grad();
      if (!failure.empty() && origin.rfind("[anomaly]", 0) != 0) throw Error(failure);  // not a NaN problem
      if (par_->distributed()) {
        // The lowest rank that found the op names it for the job.
        const bool found = origin.rfind("[anomaly]", 0) == 0;
        const std::int64_t who = dist::all_reduce_value(par_->world(), found ? std::int64_t{par_->rank()}
                                                                              : std::int64_t{par_->world_size()},
                                                        dist::Reduction::min);
        if (who < par_->world_size())
          origin = fmt::format("rank {}: {}", who, dist::broadcast_string(par_->world(), origin, static_cast<int>(who)));
      }
      if (!config_.skip_nonfinite)
        throw JobError(fmt::format("[train] step {}: the loss or a gradient is NaN/Inf; first op: {} (--skip-nonfinite "
                                   "skips such steps)", step + 1, origin));
      cursor_ += per_step;
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
    tokens += static_cast<double>(out.tokens);
    routing = out.routing;
  }
  cursor_ += per_step;
  par_->reduce_gradients(optimizer_->named_parameters());
  double grad_norm = config_.clip > 0 ? par_->clip_grad_norm(optimizer_->named_parameters(), config_.clip) : -1.0;
  optimizer_->step();
  optimizer_->zero_grad();
  double sums[6] = {loss, aux, balance, z, acc, tokens};
  reduce_report(sums, 6, routing);
  const double n = static_cast<double>(per_step);
  report = {step + 1, config_.steps, sums[0] / n, sums[1] / n, sums[2] / n, sums[3] / n, optimizer_->lr(), 0, 0, 0,
            config_.token_task() ? sums[4] / n : -1.0, ""};
  record["loss"] = report.loss;
  record["aux_loss"] = report.aux_loss;
  record["balance_loss"] = report.balance_loss;
  record["router_z_loss"] = report.router_z_loss;
  record["lr"] = report.lr;
  record["tokens"] = static_cast<std::int64_t>(sums[5]);
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
  // --precision: the GEMMs of every forward and backward of this run (the routers keep FP32).
  const core::GemmPrecisionScope precision(core::parse_precision(config_.precision, "train"));
  TrainResult result;
  // The locks are this run's: a Trainer may outlive its run (tests, the examples).
  struct Release {
    Trainer& t;
    ~Release() { t.ckpt_lock_.reset(); }
  } release{*this};
  par_->agree([&] {
    if (!config_.ckpt_dir.empty() && !ckpt_lock_ && par_->writer()) ckpt_lock_ = std::make_unique<FolderLock>(config_.ckpt_dir);
  });
  // Resume: rank 0 picks the checkpoint, every rank reads it and takes its experts.
  std::string from;
  if (config_.resume == "auto") {
    if (ckpt_dir_) from = ckpt_dir_->latest().value_or("");
  } else if (config_.resume != "none") {
    from = config_.resume;
  }
  if (par_->distributed()) from = dist::broadcast_string(par_->world(), from, 0);
  if (!from.empty()) {
    par_->agree([&] { restore(from); });
    result.resumed_from = from;
  }
  result.start_step = step_;
  result.steps = config_.steps;
  const std::int64_t end = config_.stop_at > 0 ? config_.stop_at : config_.steps;
  result.last_step = end;
  // Every refusal comes before any change (and before the start-up lines, so that a refused run
  // prints one line): checkpoints past the start, then the metrics file.
  std::vector<std::string> replaced;
  MetricsFile metrics;
  std::unique_ptr<TensorBoardWriter> tensorboard;  // rank 0's, with --tensorboard
  par_->agree([&] {
    if (!par_->writer()) return;
    replaced = checkpoints_to_replace(!from.empty());
    metrics = open_metrics(!from.empty());
    if (!config_.tensorboard.empty() && step_ < end) tensorboard = std::make_unique<TensorBoardWriter>(config_.tensorboard);
  });
  fmt::print(log_, "config: {}\n", json::dump(config_.to_json()));
  std::string model_line = fmt::format("model: {} parameters, {} active per token", par_->total_parameters(*model_),
                                       model_->active_parameters());
  if (par_->sharded()) model_line += fmt::format(" ({} on each rank)", model_->num_parameters());
  if (config_.model.kind == "dense")
    model_line += fmt::format(" (the st_moe model of these options: {}, difference {:+})",
                              model_->st_moe_active_parameters(),
                              model_->active_parameters() - model_->st_moe_active_parameters());
  fmt::print(log_, "{}; data: {}\n", model_line, data_->describe());
  if (!eval_note_.empty()) fmt::print(log_, "{}\n", eval_note_);
  if (const std::string note = capacity_factor_note(config_.model, group_size(config_)); !note.empty())
    fmt::print(log_, "{}\n", note);
  if (par_->distributed())
    fmt::print(log_, "world: {} ranks, expert-parallel {} ({} group(s) of {}, each rank holds 1/{} of every MoE layer's "
               "experts); a step takes {} x {} micro-batches of {} sequences\n", par_->world_size(),
               par_->expert_parallel(), par_->world_size() / par_->expert_parallel(), par_->expert_parallel(),
               par_->expert_parallel(), par_->world_size(), config_.grad_accum, config_.batch_size);
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
    result.bits_per_byte = config_.task == "text";
    result.wall_s = std::chrono::duration<double>(Clock::now() - t0).count();
    return result;
  }
  const bool interactive = config_.progress && isatty(fileno(log_));
  Progress progress(log_, interactive, config_.log_every);
  // Every rank takes part (the experts are gathered to rank 0), and none goes on before the file
  // is in place (or every rank stops with the writer's error).
  auto save = [&](std::int64_t step) {
    if (config_.ckpt_dir.empty()) return;
    Checkpoint ck = checkpoint(step);
    par_->agree([&] {
      if (ckpt_dir_) result.last_checkpoint = ckpt_dir_->save(ck);
    });
    if (!result.last_checkpoint.empty()) progress.message(fmt::format("checkpoint {}", result.last_checkpoint));
  };

  const bool bytes = config_.task == "text";
  result.bits_per_byte = bytes;
  double ms_avg = 0;
  while (step_ < end) {
    const auto s0 = Clock::now();
    StepReport report;
    json::Json record = {{"step", step_ + 1}};
    dist::set_step(step_ + 1);
    inject_fault(par_->rank(), step_ + 1);
    const double loss = train_step(step_, report, record);
    if (report.skipped.empty()) {
      last_loss_ = loss;
    } else {
      ++result.skipped_steps;
    }
    ++step_;
    const double ms = std::chrono::duration<double, std::milli>(Clock::now() - s0).count();
    ms_avg = ms_avg == 0 ? ms : 0.9 * ms_avg + 0.1 * ms;
    const double tokens =
        static_cast<double>(config_.batch_size * config_.seq_len * config_.grad_accum * par_->world_size());
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
      std::string line = ea >= 0 ? fmt::format("eval at step {}: loss {:.5f}, accuracy {:.3f}", step_, el, ea)
                                 : fmt::format("eval at step {}: loss {:.5f}", step_, el);
      if (bytes) {  // bytes are the tokens: the loss in bits is bits per byte
        record["eval_bits_per_byte"] = el / std::log(2.0);
        line += fmt::format(", {:.4f} bits per byte", el / std::log(2.0));
      }
      progress.message(line);
    }
    if (bytes && report.skipped.empty()) record["bits_per_byte"] = report.loss / std::log(2.0);
    record["ms_per_step"] = ms;
    record["tokens_per_s"] = ms > 0 ? tokens / (ms / 1000.0) : 0.0;
    const bool log_now = step_ % config_.log_every == 0 || step_ == config_.steps || eval_now;
    if (metrics.is_open() && log_now) metrics.write(record);
    if (tensorboard && log_now) tensorboard->write(record);
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
    s = fmt::format("nothing to do: the run is already {}; stored: {}", where,
                    losses(last_loss, eval_loss, eval_accuracy, bits_per_byte));
  } else {
    s = fmt::format("done: steps {}..{} in {:.1f} s, {}", start_step, end_step, wall_s,
                    losses(last_loss, eval_loss, eval_accuracy, bits_per_byte));
    if (skipped_steps > 0) s += fmt::format(", {} step(s) skipped as non-finite", skipped_steps);
  }
  if (!last_checkpoint.empty()) s += fmt::format("\ncheckpoint: {}", last_checkpoint);
  else if (nothing_to_do && !resumed_from.empty()) s += fmt::format("\ncheckpoint: {}", resumed_from);
  if (!metrics.empty()) s += fmt::format("\nmetrics: {}", metrics);
  return s;
}

}  // namespace moegrad::train
