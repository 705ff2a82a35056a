#include "tools/train_command.h"

#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <string>
#include <string_view>
#include <vector>

#include "core/error.h"
#include "tools/cli.h"
#include "train/checkpoint.h"
#include "dist/world.h"
#include "train/trainer.h"

namespace moegrad::tools {
namespace {

constexpr const char* kDescription =
    "Trains a model on a synthetic task, or on your own HDF5 tensors (--task tensors --train-data F.h5),\n"
    "on the CPU or a GPU, with checkpoints, metrics and resume.\n"
    "Every option is also a key of --config FILE.json (dashes become underscores: \"batch_size\");\n"
    "flags given on the command line override the file. Numbers are checked against the ranges\n"
    "shown; integers accept 1e3.";
constexpr const char* kFooter =
    "Errors print one line \"moegrad train: <message>\": exit 2 for a usage error (an unknown or\n"
    "bad flag, a value out of range, a bad --config file), 1 for an error while running.";

std::string type_name(train::TrainConfig::Option::Kind kind) {
  using K = train::TrainConfig::Option::Kind;
  return kind == K::integer ? "INT" : kind == K::number ? "X" : "TEXT";
}

// The flags of TrainConfig::options(): each given one becomes a JSON value in `given`, checked
// by option_value (the same check as a config-file value).
void add_options(CLI::App& app, json::Json& given, std::string& config_path) {
  for (const auto& o : train::TrainConfig::options()) {
    const std::string key = o.key;
    if (o.kind == train::TrainConfig::Option::Kind::boolean) {
      app.add_flag_function(
             o.flag + ",!--no-" + o.flag.substr(2), [&given, key](std::int64_t n) { given[key] = n > 0; },
             cli::with_default(o.help, o.default_value))
          ->disable_flag_override()  // a switch takes no value
          ->group(o.group);
      continue;
    }
    auto check = [key](const std::string& text) { train::TrainConfig::option_value(key, text); };
    app.add_option_function<std::string>(
           o.flag, [&given, key](const std::string& text) { given[key] = train::TrainConfig::option_value(key, text); },
           cli::with_default(o.help, o.default_value))
        ->check(cli::checked_by(check, o.range))
        ->type_name(type_name(o.kind))
        ->group(o.group);
  }
  app.add_option("--config", config_path, "read options from a JSON object (at most 1 MiB); flags override it")
      ->type_name("FILE.json");
}

// Natural order: "experts.2" before "experts.10".
bool natural_less(const std::string& a, const std::string& b) {
  std::size_t i = 0, j = 0;
  while (i < a.size() && j < b.size()) {
    if (std::isdigit(static_cast<unsigned char>(a[i])) && std::isdigit(static_cast<unsigned char>(b[j]))) {
      std::size_t ie = i, je = j;
      while (ie < a.size() && std::isdigit(static_cast<unsigned char>(a[ie]))) ++ie;
      while (je < b.size() && std::isdigit(static_cast<unsigned char>(b[je]))) ++je;
      std::string_view x(a.data() + i, ie - i), y(b.data() + j, je - j);
      while (x.size() > 1 && x.front() == '0') x.remove_prefix(1);
      while (y.size() > 1 && y.front() == '0') y.remove_prefix(1);
      if (x.size() != y.size()) return x.size() < y.size();
      if (x != y) return x < y;
      i = ie, j = je;
    } else {
      if (a[i] != b[j]) return a[i] < b[j];
      ++i, ++j;
    }
  }
  return a.size() - i < b.size() - j;
}

}  // namespace

int run_train_command(int argc, char** argv) {
  CLI::App app{kDescription, "moegrad train"};
  app.footer(kFooter);
  app.get_formatter()->column_width(34);
  json::Json given = json::Json::object();
  std::string config_path;
  add_options(app, given, config_path);
  return cli::run(app, argc, argv, [&] {
    train::TrainConfig config;
    try {  // the options and the config file: a mistake there is a usage error
      json::Json merged = config_path.empty() ? json::Json::object() : json::read_object_file(config_path, "config");
      for (const auto& [key, value] : given.items()) merged[key] = value;
      config = train::TrainConfig::from_json(merged, config_path);
    } catch (const Error& e) {
      throw cli::UsageError(e.what());
    }
    // Several ranks: an error all of them raised together is told once, by rank 0; one raised
    // by some ranks only would leave the others waiting in a collective, so it ends the job.
    try {
      train::Trainer trainer(config);
      const train::TrainResult result = trainer.run();
      if (trainer.parallel().writer()) fmt::print(stderr, "{}\n", result.summary());
    } catch (const train::JobError& e) {
      if (dist::launched_size() > 1 && dist::world().rank() != 0) return 1;
      throw;
    } catch (const Error& e) {
      if (dist::launched_size() > 1)
        dist::abort_job(fmt::format("moegrad train: [rank {}] {}", dist::world().rank(), cli::one_line(e.what())));
      throw;
    }
    return 0;
  });
}

int run_inspect_command(int argc, char** argv) {
  CLI::App app{"Prints a checkpoint's configuration, step, data cursor, generator state and parameter table "
               "(parameters in natural order: experts.2 before experts.10).",
               "moegrad inspect"};
  std::string path;
  app.add_option("CKPT.h5", path, "the checkpoint")->required();
  return cli::run(app, argc, argv, [&] {
    const train::Checkpoint ck = train::load_checkpoint(path);
    fmt::print("checkpoint {}\n  step {}, epoch {}\n", path, ck.step, ck.epoch);
    for (const auto& [name, c] : ck.cursor) fmt::print("  data cursor {}: {}\n", name, c);
    for (const auto& [name, s] : ck.rng) fmt::print("  generator {}: seed {}, offset {}\n", name, s.seed, s.offset);
    for (const auto& [k, v] : ck.attributes) fmt::print("  {}: {}\n", k, v);
    fmt::print("  config: {}\n", ck.config_json);
    fmt::print("  content crc64: {:016x}\n", train::content_digest(ck));
    struct Row {
      std::string key, dtype, shape, numel;
    };
    std::vector<Row> rows;
    std::int64_t total = 0;
    for (const auto& [key, t] : ck.model) {
      rows.push_back({key, core::dtype_name(t.dtype()), core::shape_str(t.shape()), std::to_string(t.numel())});
      total += t.numel();
    }
    std::sort(rows.begin(), rows.end(), [](const Row& a, const Row& b) { return natural_less(a.key, b.key); });
    Row head{"parameter", "dtype", "shape", "numel"};
    std::size_t w[4] = {head.key.size(), head.dtype.size(), head.shape.size(), head.numel.size()};
    for (const Row& r : rows) {
      w[0] = std::max(w[0], r.key.size());
      w[1] = std::max(w[1], r.dtype.size());
      w[2] = std::max(w[2], r.shape.size());
      w[3] = std::max(w[3], r.numel.size());
    }
    const auto print_row = [&](const Row& r) {
      fmt::print("  {:<{}}  {:<{}}  {:>{}}  {:>{}}\n", r.key, w[0], r.dtype, w[1], r.shape, w[2], r.numel, w[3]);
    };
    fmt::print("\n");
    print_row(head);
    for (const Row& r : rows) print_row(r);
    fmt::print("  {} tensors, {} values; optimizer state: {} tensors\n", ck.model.size(), total, ck.optimizer.size());
    return 0;
  });
}

}  // namespace moegrad::tools
