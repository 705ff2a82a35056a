// Stop a training run, resume it from its checkpoint, and check that nothing was lost: the
// resumed run ends with exactly the parameters (bit for bit) of a run that was never stopped.
//
// train::Trainer runs the whole loop from a TrainConfig (what `moegrad train` builds from its
// flags). A checkpoint holds the model, the optimizer state, the step, the data cursor and the
// generator behind the gate noise and routing draws, so the resumed run draws the same batches
// and the same noise that the uninterrupted run drew after that step.
//
//   build/release/examples/resume_from_checkpoint [--steps N] [--stop-at K] [--dir DIR]
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>

#include "tools/cli.h"
#include "train/trainer.h"

namespace nn = moegrad::nn;
namespace train = moegrad::train;
namespace fs = std::filesystem;

// Bitwise equality of two state dicts (same keys, same bytes).
static bool bitwise_equal(const nn::StateDict& a, const nn::StateDict& b, std::int64_t& elements) {
  if (a.keys() != b.keys()) return false;
  for (const auto& [key, t] : a) {
    const nn::Tensor& u = b.at(key);
    if (t.shape() != u.shape() || t.dtype() != u.dtype()) return false;
    const auto x = t.to_vector<double>(), y = u.to_vector<double>();  // exact for f32 and i64 counters
    if (std::memcmp(x.data(), y.data(), x.size() * sizeof(double)) != 0) return false;
    elements += t.numel();
  }
  return true;
}

int run(std::int64_t steps, std::int64_t stop_at, std::string dir) {
  if (stop_at < 0) stop_at = steps / 2;
  if (stop_at < 1 || stop_at >= steps)
    throw moegrad::cli::UsageError(fmt::format("need 1 <= --stop-at < --steps, got {} and {}", stop_at, steps));
  const bool own_dir = dir.empty();
  if (own_dir) {  // a fresh temporary folder, removed at the end
    std::string tmpl = (fs::temp_directory_path() / "moegrad-resume-XXXXXX").string();
    if (!mkdtemp(tmpl.data())) {
      std::perror("mkdtemp");
      return 1;
    }
    dir = tmpl;
  }
  const std::string ckpt_dir = (fs::path(dir) / "checkpoints").string();
  fs::remove_all(ckpt_dir);  // start from no checkpoint: "auto" would resume a previous run's

  // A small st-moe regression run with gate noise (so the generator state matters on resume).
  train::TrainConfig config;
  config.task = "clustered-regression";
  config.model.kind = "st_moe";
  config.model.experts = 4;
  config.model.noise_gates = true;
  config.batch_size = 16;
  config.steps = steps;
  config.warmup = steps / 10;
  config.eval_every = 0;  // evaluate at the end only
  config.log_every = std::max<std::int64_t>(1, steps / 5);
  config.progress = false;
  config.seed = 0;

  // 1. The reference: all steps in one go, no checkpoints.
  train::TrainConfig reference = config;
  reference.resume = "none";
  train::Trainer uninterrupted(reference, /*log=*/nullptr);
  const train::TrainResult r0 = uninterrupted.run();
  std::printf("uninterrupted: %lld steps, last loss %.5f\n", static_cast<long long>(r0.end_step), r0.last_loss);

  // 2. The same run, stopped after step K with a checkpoint (like a job killed by a scheduler).
  config.ckpt_dir = ckpt_dir;
  config.ckpt_every = steps;  // checkpoints at stop_at and at the end
  config.stop_at = stop_at;
  config.resume = "auto";     // the newest complete checkpoint in ckpt_dir; none yet
  std::printf("--- first run, stops at step %lld ---\n", static_cast<long long>(stop_at));
  const train::TrainResult r1 = train::Trainer(config, stdout).run();

  // What the checkpoint holds, read back with its checksums verified.
  const train::Checkpoint ck = train::load_checkpoint(r1.last_checkpoint);
  const train::TrainConfig saved = train::TrainConfig::from_json(moegrad::json::parse(ck.config_json, r1.last_checkpoint));
  std::printf("checkpoint %s: step %lld, data cursor %lld, %zu model tensors, %zu optimizer tensors,\n"
              "  generator (seed %llu, offset %llu), config: model %s, steps %lld, stop_at %lld\n",
              r1.last_checkpoint.c_str(), static_cast<long long>(ck.step), static_cast<long long>(ck.cursor.at("train")),
              ck.model.size(), ck.optimizer.size(), static_cast<unsigned long long>(ck.rng.at("model").seed),
              static_cast<unsigned long long>(ck.rng.at("model").offset), saved.model.kind.c_str(),
              static_cast<long long>(saved.steps), static_cast<long long>(saved.stop_at));

  // 3. A new process would do this: same config without stop_at; "auto" finds the checkpoint.
  config.stop_at = 0;
  std::printf("--- second run, resumes ---\n");
  train::Trainer resumed(config, stdout);
  const train::TrainResult r2 = resumed.run();
  std::printf("resumed from %s at step %lld, ended at step %lld, last loss %.5f\n", r2.resumed_from.c_str(),
              static_cast<long long>(r2.start_step), static_cast<long long>(r2.end_step), r2.last_loss);

  // 4. Bitwise comparison of the final parameters and optimizer state.
  std::int64_t n = 0;
  const bool params_equal = bitwise_equal(uninterrupted.model().state_dict(), resumed.model().state_dict(), n);
  const bool optim_equal = bitwise_equal(uninterrupted.optimizer().state_dict(), resumed.optimizer().state_dict(), n);
  if (own_dir) fs::remove_all(dir);
  const bool ok = params_equal && optim_equal && r2.start_step == stop_at && r2.last_loss == r0.last_loss;
  std::printf("parameters %s, optimizer state %s (%lld values): %s\n", params_equal ? "equal" : "DIFFER",
              optim_equal ? "equal" : "DIFFER", static_cast<long long>(n),
              ok ? "the resumed run is bitwise identical to the uninterrupted one" : "error: resume changed the run");
  return ok ? 0 : 1;
}

int main(int argc, char** argv) {
  std::int64_t steps = 60, stop_at = -1;
  std::string dir;
  CLI::App app{"Trains N steps in one go, then again stopped at step K and resumed from the checkpoint in\n"
               "DIR/checkpoints (default: a temporary folder), and checks that both runs end with\n"
               "bitwise-equal parameters.",
               "resume_from_checkpoint"};
  moegrad::cli::add_integer(app, "--steps", steps, 2, 1000000, "training steps");
  moegrad::cli::add_integer(app, "--stop-at", stop_at, -1, 1000000, "the step of the interruption (-1: steps / 2)");
  app.add_option("--dir", dir, "folder of the checkpoints (default: a temporary folder)");
  return moegrad::cli::run(app, argc, argv, [&] { return run(steps, stop_at, dir); });
}
