#include "tools/train_command.h"

#include <fmt/format.h>

#include <cstring>
#include <fstream>
#include <sstream>
#include <string>

#include "core/error.h"
#include "train/checkpoint.h"
#include "train/trainer.h"

namespace moegrad::tools {
namespace {

constexpr const char* kHelp = R"(usage: moegrad train [options]

Trains a model on a synthetic task on the CPU or a GPU, with checkpoints, metrics and resume.
Every option is also a key of --config FILE.json (dashes become underscores: "batch_size");
flags given on the command line override the file.

task and model
  --task T               clustered-regression (default) or sequence (permuted copy of tokens)
  --model M              st_moe (default), lucidrains, hierarchical, or dense (the baseline:
                         GEGLU feed-forwards whose width gives the active parameters per
                         token closest to the st_moe model's: within (3 x dim + 3) / 2 a layer)
  --experts N            experts per MoE layer (default 16; hierarchical: outer x inner)
  --experts-outer N      hierarchical: outer experts (default 2)
  --top-n K              experts per token (st_moe; lucidrains/hierarchical are top-2)
  --capacity-factor F    expert capacity factor, train and eval (default 1.25)
  --dropless             no capacity: no token is dropped
  --dim D, --hidden H    model width and each expert's hidden width (default 32, 32)
  --layers L             MoE layers (default 1)
  --noise-gates, --noise-mult X   gumbel gate noise (st_moe)
  --balance-loss-coef X, --router-z-loss-coef X   aux loss weights (default 1e-2, 1e-3)
  --input-dim N, --clusters N     clustered-regression sizes (default 16, 16)
  --vocab N              sequence vocabulary (default 64)
  --seq-len N, --batch-size N     tokens per sequence and sequences per batch (default 16, 32)

optimisation
  --steps N              optimizer steps (default 1000)
  --optimizer O          adamw (default), adam or sgd;  --lr X (default 3e-3), --weight-decay X,
                         --momentum X (sgd)
  --warmup N             linear warmup steps, then cosine decay to --min-lr (default 20, 0)
  --clip X               clip the global gradient norm to X (default 1; 0 = off)
  --grad-accum N         micro-batches per step (default 1)
  --skip-nonfinite       skip a step whose loss or gradients are NaN/Inf instead of stopping
  --seed N               seed of the data, the initialisation and the gate noise (default 0)
  --device D             cpu (default), cuda or cuda:N: where the model, the batches and the
                         optimizer state live; a CUDA device that is not present is an error.
                         Checkpoints load on either (a GPU run resumes on the CPU and back)

evaluation, logging and checkpoints
  --eval-every N, --eval-batches N   evaluate every N steps on N fixed batches (default 200, 4)
  --log-every N          log (and write metrics) every N steps (default 10)
  --no-progress          plain log lines even on a terminal
  --metrics FILE         one JSON object per logged step: losses, lr, grad norm, per-layer
                         tokens per expert, dropped fraction, dead experts. A resumed run
                         appends (dropping records past the step it resumes from); a fresh
                         run refuses a non-empty file unless --overwrite
  --ckpt-dir DIR         write checkpoints DIR/step-<step>.h5 (HDF5, atomic)
  --ckpt-every N         every N steps, and at the end (default 250)
  --keep-last N          keep the newest N checkpoints (default 3; 0 = all)
  --resume auto|PATH|none   auto (default): the newest complete checkpoint in --ckpt-dir.
                         A run refuses a --ckpt-dir with checkpoints past its start (any, for
                         --resume none) unless --overwrite; one run per folder (locked)
  --overwrite            remove those checkpoints at start and empty a fresh run's --metrics
  --stop-at STEP         end the run after STEP with a checkpoint, as an interruption would;
                         resuming continues the same schedule to --steps
  --config FILE.json     read options from a JSON file
  -h, --help             show this help

Errors print one line "moegrad train: <message>" and exit with 1 (2 for usage errors).
)";

struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

std::string key_of(const std::string& flag) {
  std::string k = flag.substr(2);
  for (char& c : k)
    if (c == '-') c = '_';
  return k;
}

std::string read_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) fail("train", "cannot read --config file '{}'", path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Flags become JSON values typed by the defaults: booleans are switches (--x / --no-x).
train::TrainConfig parse(int argc, char** argv) {
  const json::Value defaults = train::TrainConfig{}.to_json();
  json::Value given = json::Value::object();
  json::Value file = json::Value::object();
  for (int i = 1; i < argc; ++i) {
    const std::string flag = argv[i];
    if (flag.rfind("--", 0) != 0) throw UsageError(fmt::format("unexpected argument '{}'", flag));
    if (flag == "--config") {
      if (i + 1 >= argc) throw UsageError("--config needs a value");
      const std::string path = argv[++i];
      file = json::parse(read_file(path), path);
      continue;
    }
    const bool negated = flag.rfind("--no-", 0) == 0;
    const std::string key = key_of(negated ? "--" + flag.substr(5) : flag);
    const json::Value* def = defaults.find(key);
    if (!def) throw UsageError(fmt::format("unknown option '{}'", flag));
    if (given.contains(key)) throw UsageError(fmt::format("option '{}' given twice", flag));
    if (def->is_bool()) {
      given.set(key, !negated);
      continue;
    }
    if (negated) throw UsageError(fmt::format("unknown option '{}'", flag));
    if (i + 1 >= argc) throw UsageError(fmt::format("{} needs a value", flag));
    const std::string text = argv[++i];
    try {
      if (def->is_string()) {
        given.set(key, text);
      } else {
        std::size_t used = 0;
        if (def->is_int()) {
          const long long v = std::stoll(text, &used);
          if (used != text.size()) throw std::invalid_argument(text);
          given.set(key, static_cast<std::int64_t>(v));
        } else {
          const double v = std::stod(text, &used);
          if (used != text.size()) throw std::invalid_argument(text);
          given.set(key, v);
        }
      }
    } catch (const std::logic_error&) {
      throw UsageError(fmt::format("{} needs {}, got '{}'", flag, def->is_int() ? "an integer" : "a number", text));
    }
  }
  json::Value merged = file.is_object() ? file : json::Value::object();
  for (const auto& [k, v] : given.as_object()) merged.set(k, v);
  return train::TrainConfig::from_json(merged);
}

std::string one_line(std::string s) {
  for (char& c : s)
    if (c == '\n') c = ' ';
  return s;
}

}  // namespace

int run_train_command(int argc, char** argv) {
  for (int i = 1; i < argc; ++i)
    if (!std::strcmp(argv[i], "-h") || !std::strcmp(argv[i], "--help")) {
      fmt::print("{}", kHelp);
      return 0;
    }
  try {
    train::TrainConfig config = parse(argc, argv);
    train::Trainer trainer(config);
    fmt::print(stderr, "{}\n", trainer.run().summary());
    return 0;
  } catch (const UsageError& e) {
    fmt::print(stderr, "moegrad train: {} (see moegrad train --help)\n", e.what());
    return 2;
  } catch (const std::exception& e) {
    fmt::print(stderr, "moegrad train: {}\n", one_line(e.what()));
    return 1;
  }
}

int run_inspect_command(int argc, char** argv) {
  if (argc != 2 || !std::strcmp(argv[1], "-h") || !std::strcmp(argv[1], "--help")) {
    fmt::print(argc == 2 ? stdout : stderr,
               "usage: moegrad inspect CKPT.h5\n\nPrints a checkpoint's configuration, step, data cursor, generator "
               "state and parameter table.\n");
    return argc == 2 ? 0 : 2;
  }
  try {
    const train::Checkpoint ck = train::load_checkpoint(argv[1]);
    fmt::print("checkpoint {}\n  step {}, epoch {}\n", argv[1], ck.step, ck.epoch);
    for (const auto& [name, c] : ck.cursor) fmt::print("  data cursor {}: {}\n", name, c);
    for (const auto& [name, s] : ck.rng) fmt::print("  generator {}: seed {}, offset {}\n", name, s.seed, s.offset);
    for (const auto& [k, v] : ck.attributes) fmt::print("  {}: {}\n", k, v);
    fmt::print("  config: {}\n", ck.config_json);
    fmt::print("  content crc64: {:016x}\n", train::content_digest(ck));
    std::int64_t total = 0;
    fmt::print("\n  {:<48} {:>6} {:>16} {:>10}\n", "parameter", "dtype", "shape", "numel");
    for (const auto& [key, t] : ck.model) {
      fmt::print("  {:<48} {:>6} {:>16} {:>10}\n", key, core::dtype_name(t.dtype()), core::shape_str(t.shape()),
                 t.numel());
      total += t.numel();
    }
    fmt::print("  {} tensors, {} values; optimizer state: {} tensors\n", ck.model.size(), total, ck.optimizer.size());
    return 0;
  } catch (const std::exception& e) {
    fmt::print(stderr, "moegrad inspect: {}\n", one_line(e.what()));
    return 1;
  }
}

}  // namespace moegrad::tools
