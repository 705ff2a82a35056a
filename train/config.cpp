#include "train/config.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <charconv>
#include <cctype>
#include <cmath>
#include <cstdlib>
#include <set>

#include "core/device.h"
#include "core/error.h"

namespace moegrad::train {

namespace {
constexpr const char* kOp = "config";
constexpr double kBig = 1e6;            // bound of factors, coefficients and learning rates
constexpr std::int64_t kSteps = 999999999;  // checkpoint names hold 9 digits
constexpr std::int64_t kWidth = 1 << 20;    // counts of work: outer experts, top-n, micro-batches
// Sizes (widths, experts, vocabulary, batch): far past any machine, so that what does not fit is
// told by the allocation check ("cannot allocate N bytes ... more than the memory limit").
constexpr std::int64_t kSize = std::int64_t{1} << 40;

// The values an option accepts: numbers within [lo, hi] (an end excluded when open), text
// among choices (any text when there are none; device: core::Device::parse's spellings).
struct Limits {
  double lo = -INFINITY, hi = INFINITY;
  bool lo_open = false, hi_open = false;
  std::vector<const char*> choices = {};
  bool device = false;
};

// One row of the table. Adding an option: one line in fields() (and its member in config.h).
struct Field {
  const char* key;
  const char* group;
  const char* help;
  Limits limits = {};
  const char* default_text = nullptr;  // for --help, when not the default value itself
};

constexpr const char* kModel = "task and model";
constexpr const char* kOptim = "optimisation";
constexpr const char* kLog = "evaluation, logging and checkpoints";
constexpr const char* kDist = "distributed (mpirun -np W moegrad train ...)";

// Every option once: the command line, the JSON keys, the ranges and to_json's order.
template <class Visit>
void fields(TrainConfig& c, Visit&& v) {
  v(Field{"task", kModel, "clustered-regression, sequence (a permuted copy of tokens), tensors (your own data: --train-data), "
          "or text (a byte-level causal transformer language model: --text)",
          {.choices = {"clustered-regression", "sequence", "tensors", "text"}}}, c.task);
  v(Field{"text", kModel, "--task text: a file of text; its bytes are the tokens (vocab 256), windows of --seq-len + 1 "
          "bytes drawn from the seed"}, c.text);
  v(Field{"eval_text", kModel, "--task text: a file to evaluate on (default: the last 10% of --text is held out and "
          "training draws from the rest)"}, c.eval_text);
  v(Field{"train_data", kModel, "--task tensors: an HDF5 file with x [N, in] and y [N, out] (or [N, seq, in/out]), or "
          "tokens [N, seq] (and targets [N, seq]; without them, next-token prediction)"}, c.train_data);
  v(Field{"data_kind", kModel, "--task tensors: what --train-data holds: auto (found from its datasets), regression "
          "(x, y) or tokens; a run stores what it found", {.choices = {"auto", "regression", "tokens"}}}, c.data_kind);
  v(Field{"eval_data", kModel, "--task tensors: an HDF5 file like --train-data to evaluate on, in file order (without it: "
          "the first --eval-batches batches of --train-data, in file order)"}, c.eval_data);
  v(Field{"model", kModel, "st_moe, lucidrains, hierarchical, or dense (the baseline: GEGLU feed-forwards whose width gives the active parameters per token closest to the st_moe model's)",
          {.choices = {"st_moe", "lucidrains", "hierarchical", "dense"}}}, c.model.kind);
  v(Field{"dim", kModel, "model width", {1, kSize}}, c.model.dim);
  v(Field{"hidden", kModel, "each expert's hidden width", {1, kSize}}, c.model.hidden);
  v(Field{"experts", kModel, "experts per MoE layer (hierarchical: outer x inner)", {2, kSize}}, c.model.experts);
  v(Field{"experts_outer", kModel, "hierarchical: outer experts", {2, kWidth}}, c.model.experts_outer);
  v(Field{"top_n", kModel, "experts per token (st_moe; lucidrains/hierarchical are top-2)", {1, kWidth}},
    c.model.top_n);
  v(Field{"layers", kModel, "MoE layers (--task text: transformer blocks)", {1, 4096}}, c.model.layers);
  v(Field{"heads", kModel, "--task text: attention heads (--dim / --heads must be even)", {1, 4096}}, c.model.heads);
  v(Field{"capacity_factor", kModel, "expert capacity factor, train and eval", {0, kBig, true}},
    c.model.capacity_factor);
  v(Field{"dropless", kModel, "no capacity: no token is dropped"}, c.model.dropless);
  v(Field{"noise_gates", kModel, "gumbel gate noise (st_moe only)"}, c.model.noise_gates);
  v(Field{"noise_mult", kModel, "gate noise multiplier", {0, kBig}}, c.model.noise_mult);
  v(Field{"balance_loss_coef", kModel, "weight of the load-balancing loss", {0, kBig}}, c.model.balance_loss_coef);
  v(Field{"router_z_loss_coef", kModel, "weight of the router z-loss", {0, kBig}}, c.model.router_z_loss_coef);
  v(Field{"input_dim", kModel, "clustered-regression input width (tensors: from the file)", {1, kSize}}, c.input_dim);
  v(Field{"output_dim", kModel, "clustered-regression output width, 0 = --input-dim (tensors: from the file)",
          {0, kSize}}, c.output_dim);
  v(Field{"clusters", kModel, "clustered-regression clusters", {1, kSize}}, c.clusters);
  v(Field{"vocab", kModel, "sequence vocabulary (tensors: the largest token + 1, or this when given and larger; text: 256)",
          {2, kSize}}, c.vocab);
  v(Field{"seq_len", kModel, "tokens per sequence (tensors: from the file)", {1, kSize}}, c.seq_len);
  v(Field{"batch_size", kModel, "sequences per batch", {1, kSize}}, c.batch_size);
  v(Field{"steps", kOptim, "optimizer steps", {1, kSteps}}, c.steps);
  v(Field{"optimizer", kOptim, "adamw, adam or sgd", {.choices = {"adamw", "adam", "sgd"}}}, c.optimizer);
  v(Field{"lr", kOptim, "peak learning rate", {0, kBig, true}}, c.lr);
  v(Field{"weight_decay", kOptim, "weight decay", {0, kBig}}, c.weight_decay);
  v(Field{"momentum", kOptim, "sgd momentum", {0, 1, false, true}}, c.momentum);
  v(Field{"warmup", kOptim, "linear warmup steps, then cosine decay to --min-lr", {0, kSteps}, "min(20, steps/10)"},
    c.warmup);
  v(Field{"min_lr", kOptim, "learning rate at the end of the decay (<= --lr)", {0, kBig}}, c.min_lr);
  v(Field{"clip", kOptim, "clip the global gradient norm to X (0 = off)", {0, 1e12}}, c.clip);
  v(Field{"grad_accum", kOptim, "micro-batches per step", {1, kWidth}}, c.grad_accum);
  v(Field{"skip_nonfinite", kOptim, "skip a step whose loss or gradients are NaN/Inf instead of stopping"},
    c.skip_nonfinite);
  v(Field{"seed", kOptim, "seed of the data, the initialisation and the gate noise"}, c.seed);
  v(Field{"device", kOptim, "cpu, cuda or cuda:N: where the model, the batches and the optimizer state live",
          {.device = true}}, c.device);
  v(Field{"precision", kOptim, "GEMM precision: fp32, or bf16 (bf16 operands, FP32 accumulation; parameters, optimizer "
          "state, router, losses and checkpoints stay FP32); part of the run's identity",
          {.choices = {"fp32", "bf16"}}}, c.precision);
  v(Field{"eval_every", kLog, "evaluate every N steps (0 = only at the end)", {0, kSteps}}, c.eval_every);
  v(Field{"eval_batches", kLog, "fixed batches per evaluation", {1, kWidth}}, c.eval_batches);
  v(Field{"log_every", kLog, "log (and write metrics) every N steps", {1, kSteps}}, c.log_every);
  v(Field{"progress", kLog, "redraw one progress line on a terminal (--no-progress: plain lines)"}, c.progress);
  v(Field{"metrics", kLog, "one JSON object per logged step; a resumed run appends (dropping records past its step), a "
          "fresh run refuses a non-empty FILE unless --overwrite"}, c.metrics);
  v(Field{"tensorboard", kLog, "also write the logged values as TensorBoard event files in DIR (tensorboard --logdir DIR)"},
    c.tensorboard);
  v(Field{"ckpt_dir", kLog, "write checkpoints DIR/step-<step>.h5 (HDF5, atomic); one run per folder (locked)"}, c.ckpt_dir);
  v(Field{"ckpt_every", kLog, "checkpoint every N steps, and at the end", {1, kSteps}}, c.ckpt_every);
  v(Field{"keep_last", kLog, "keep the newest N checkpoints (0 = all)", {0, kBig}}, c.keep_last);
  v(Field{"resume", kLog, "auto (the newest complete checkpoint in --ckpt-dir), none, or a checkpoint path"},
    c.resume);
  v(Field{"stop_at", kLog, "end the run after STEP with a checkpoint, as an interruption would (0 = off)",
          {0, kSteps}}, c.stop_at);
  v(Field{"overwrite", kLog,
          "remove checkpoints past the run's start (every one, for a fresh run) and empty a fresh run's "
          "--metrics; without it such a run is refused"},
    c.overwrite);
  v(Field{"expert_parallel", kDist,
          "P: spread each MoE layer's experts over groups of P ranks (P divides the world size and the experts); "
          "the other W / P ways are data-parallel",
          {1, kWidth}}, c.expert_parallel);
  v(Field{"collective_timeout", kDist,
          "seconds a collective may wait for the other ranks before the job is aborted, naming the ranks that did "
          "not arrive",
          {0, kBig, true}}, c.collective_timeout);
}

template <class T> constexpr bool is_int = std::is_integral_v<T> && !std::is_same_v<T, bool>;

std::string flag_of(const char* key) {
  std::string f = std::string("--") + key;
  std::replace(f.begin(), f.end(), '_', '-');
  return f;
}

std::string num(double v, bool integer) {
  return integer && std::abs(v) < 9e15 ? fmt::format("{}", static_cast<std::int64_t>(v)) : fmt::format("{:g}", v);
}

std::string range_text(const Limits& l, bool integer) {
  if (!l.choices.empty()) return fmt::format("{}", fmt::join(l.choices, "|"));
  if (std::isinf(l.lo) && std::isinf(l.hi)) return "";
  return fmt::format("{}{}, {}{}", l.lo_open ? '(' : '[', num(l.lo, integer), num(l.hi, integer), l.hi_open ? ')' : ']');
}

// "" when v is in range, else what is wrong ("must be > 0, got -1").
std::string number_problem(const Limits& l, double v, bool integer, const std::string& got) {
  if (!std::isfinite(v)) return fmt::format("must be a finite number, got {}", got);
  if (l.lo_open ? !(v > l.lo) : !(v >= l.lo))
    return fmt::format("must be {} {}, got {}", l.lo_open ? ">" : ">=", num(l.lo, integer), got);
  if (l.hi_open ? !(v < l.hi) : !(v <= l.hi))
    return fmt::format("must be {} {}, got {}", l.hi_open ? "<" : "<=", num(l.hi, integer), got);
  return "";
}

std::string text_problem(const Limits& l, const std::string& v) {
  if (!l.choices.empty() && std::find(l.choices.begin(), l.choices.end(), v) == l.choices.end())
    return fmt::format("must be one of {}; got '{}'", fmt::join(l.choices, ", "), json::elide(v));
  if (l.device) {
    try {
      core::Device::parse(v);
    } catch (const Error&) {
      return fmt::format("must be cpu, cuda or cuda:N, got '{}'", json::elide(v));
    }
  }
  return "";
}

template <class T> std::string problem(const Limits& l, const T& v) {
  if constexpr (std::is_same_v<T, std::string>) return text_problem(l, v);
  else if constexpr (std::is_same_v<T, bool>) return "";
  else if constexpr (is_int<T>) return number_problem(l, static_cast<double>(v), true, fmt::format("{}", v));
  else return number_problem(l, v, false, fmt::format("{:g}", v));
}

// Reads one value of a JSON object; errors name the source and the key.
template <class T> void read(const json::Node& n, const Limits& l, T& out) {
  if constexpr (std::is_same_v<T, bool>) out = n.as_bool();
  else if constexpr (std::is_same_v<T, std::string>) out = n.as_string();
  else if constexpr (std::is_same_v<T, std::uint64_t>) out = n.as_uint();
  else if constexpr (is_int<T>) out = n.as_int();
  else out = n.as_double();
  if (const std::string p = problem(l, out); !p.empty()) n.error(p);
}

// Command-line text to a value of T: integers exact ("1e3" is 1000; "1.5" and "4294967297" for
// a smaller type are errors), numbers finite, booleans true/false.
template <class T> T from_text(const std::string& flag, const std::string& text) {
  if constexpr (std::is_same_v<T, std::string>) {
    return text;
  } else if constexpr (std::is_same_v<T, bool>) {
    if (text == "true" || text == "1") return true;
    if (text == "false" || text == "0") return false;
    fail(kOp, "{} takes true or false, got '{}'", flag, json::elide(text));
  } else {
    const char* end = text.data() + text.size();
    T v{};
    if (auto [p, ec] = std::from_chars(text.data(), end, v); ec == std::errc() && p == end) return v;
    // strtod, not from_chars: it tells an overflow (inf) from an underflow (0).
    char* stop = nullptr;
    // Decimal only: no leading space, no hexadecimal ("0x10").
    const bool decimal = !text.empty() && !std::isspace(static_cast<unsigned char>(text[0])) &&
                         text.find_first_of("xX") == std::string::npos;
    const double d = decimal ? std::strtod(text.c_str(), &stop) : NAN;
    const bool number = stop == text.c_str() + text.size();
    if constexpr (std::is_floating_point_v<T>) {
      if (!number) fail(kOp, "{} needs a number, got '{}'", flag, json::elide(text));
      return d;
    } else {
      // Integral and exactly representable in T (2^63 and beyond are not int64).
      if (!number || d != std::trunc(d)) fail(kOp, "{} needs an integer, got '{}'", flag, json::elide(text));
      if (!(d >= static_cast<double>(std::numeric_limits<T>::min()) && d < std::ldexp(1.0, std::numeric_limits<T>::digits)))
        fail(kOp, "{} must be in [{}, {}], got {}", flag, std::numeric_limits<T>::min(), std::numeric_limits<T>::max(),
             json::elide(text));
      return static_cast<T>(d);
    }
  }
}

template <class T> TrainConfig::Option::Kind kind_of() {
  using K = TrainConfig::Option::Kind;
  if constexpr (std::is_same_v<T, bool>) return K::boolean;
  else if constexpr (std::is_same_v<T, std::string>) return K::text;
  else if constexpr (is_int<T>) return K::integer;
  else return K::number;
}
}  // namespace

json::Json TrainConfig::to_json() const {
  json::Json out = json::Json::object();
  TrainConfig copy = *this;
  fields(copy, [&](const Field& f, const auto& value) { out[f.key] = value; });
  return out;
}

TrainConfig TrainConfig::from_json(const json::Json& v, const std::string& source) {
  const json::Node root(v, kOp, source);
  if (!v.is_object()) root.error(fmt::format("a configuration must be a JSON object, got {}", json::type_name(v)));
  TrainConfig c;
  std::set<std::string> known;
  fields(c, [&](const Field& f, auto& value) {
    known.insert(f.key);
    if (auto given = root.find(f.key)) read(*given, f.limits, value);
  });
  for (const auto& [key, value] : root.members())
    if (!known.count(key))
      root.error(fmt::format("unknown key '{}' (keys are the flags' names with '_' for '-')", json::elide(key)));
  // The default warmup fits every valid --steps.
  if (!v.contains("warmup")) c.warmup = std::min<std::int64_t>(20, c.steps / 10);
  c.vocab_given = v.contains("vocab");
  c.validate();
  return c;
}

void TrainConfig::validate() const {
  check_model_options(model);
  TrainConfig copy = *this;
  fields(copy, [&](const Field& f, const auto& value) {
    if (const std::string p = problem(f.limits, value); !p.empty()) fail(kOp, "{} {}", flag_of(f.key), p);
  });
  MOEGRAD_CHECK(warmup <= steps, kOp, "--warmup must be <= --steps = {}, got {}", steps, warmup);
  MOEGRAD_CHECK(min_lr <= lr, kOp, "--min-lr must be <= --lr = {:g}, got {:g}", lr, min_lr);
  MOEGRAD_CHECK(stop_at <= steps, kOp, "--stop-at must be <= --steps = {}, got {}", steps, stop_at);
  MOEGRAD_CHECK(!resume.empty(), kOp, "--resume must be auto, none or a path");
  if (stop_at > 0 && ckpt_dir.empty()) fail(kOp, "--stop-at needs --ckpt-dir (it ends the run with a checkpoint)");
  if (task == "tensors" && train_data.empty()) fail(kOp, "--task tensors needs --train-data FILE.h5");
  if (task != "tensors" && !train_data.empty()) fail(kOp, "--train-data needs --task tensors (got --task {})", task);
  if (task != "tensors" && !eval_data.empty()) fail(kOp, "--eval-data needs --task tensors (got --task {})", task);
  if (task != "tensors" && data_kind != "auto") fail(kOp, "--data-kind needs --task tensors (got --task {})", task);
  if (task == "text" && text.empty()) fail(kOp, "--task text needs --text FILE");
  if (task != "text" && !text.empty()) fail(kOp, "--text needs --task text (got --task {})", task);
  if (task != "text" && !eval_text.empty()) fail(kOp, "--eval-text needs --task text (got --task {})", task);
  if (task == "text" && (model.dim % model.heads != 0 || (model.dim / model.heads) % 2 != 0))
    fail(kOp, "--task text: --dim must be a multiple of --heads with an even quotient (the rotary head width), got "
         "--dim {} and --heads {}", model.dim, model.heads);
}

bool TrainConfig::token_task() const {
  return task == "sequence" || task == "text" || (task == "tensors" && data_kind == "tokens");
}

json::Json TrainConfig::identity() const {
  const json::Json all = to_json();
  json::Json out = json::Json::object();
  for (const char* key : {"task", "model", "dim", "hidden", "experts", "experts_outer", "top_n", "layers", "input_dim",
                          "clusters", "vocab", "seq_len", "batch_size", "seed", "optimizer"})
    out[key] = all.at(key);
  // Only where they matter, so that the synthetic tasks' checkpoints keep their identity.
  if (output_dim != 0) out["output_dim"] = output_dim;
  if (task == "text") out["heads"] = model.heads;
  if (precision != "fp32") out["precision"] = precision;  // fp32 runs keep the identity they had before the option
  if (!data_identity.is_null()) out["train_data"] = data_identity;
  return out;
}

const std::vector<TrainConfig::Option>& TrainConfig::options() {
  static const std::vector<Option> table = [] {
    std::vector<Option> out;
    TrainConfig defaults;
    fields(defaults, [&](const Field& f, const auto& value) {
      using T = std::decay_t<decltype(value)>;
      out.push_back(Option{f.key, flag_of(f.key), f.group, f.help, kind_of<T>(), range_text(f.limits, is_int<T>),
                           f.default_text ? f.default_text : json::dump(json::Json(value))});
    });
    return out;
  }();
  return table;
}

json::Json TrainConfig::option_value(const std::string& key, const std::string& text) {
  TrainConfig c;
  json::Json out;
  bool found = false;
  fields(c, [&](const Field& f, auto& value) {
    if (found || key != f.key) return;
    found = true;
    using T = std::decay_t<decltype(value)>;
    const std::string flag = flag_of(f.key);
    const T v = from_text<T>(flag, text);
    if (const std::string p = problem(f.limits, v); !p.empty()) fail(kOp, "{} {}", flag, p);
    out = v;
  });
  MOEGRAD_CHECK(found, kOp, "unknown option '{}'", key);
  return out;
}

std::int64_t parse_integer(const std::string& flag, const std::string& text, std::int64_t lo, std::int64_t hi) {
  const auto v = from_text<std::int64_t>(flag, text);
  if (const std::string p = problem(Limits{static_cast<double>(lo), static_cast<double>(hi)}, v); !p.empty())
    fail(kOp, "{} {}", flag, p);
  return v;
}

std::uint64_t parse_unsigned(const std::string& flag, const std::string& text) {
  return from_text<std::uint64_t>(flag, text);
}

double parse_number(const std::string& flag, const std::string& text, double lo, double hi) {
  const double v = from_text<double>(flag, text);
  if (const std::string p = problem(Limits{lo, hi}, v); !p.empty()) fail(kOp, "{} {}", flag, p);
  return v;
}

}  // namespace moegrad::train
