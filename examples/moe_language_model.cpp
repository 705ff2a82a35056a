// A small MoE transformer language model on real text: bytes as tokens (vocab 256), L blocks of
// causal self-attention (rotary positions) and an st-moe feed-forward (top-2 of 8 experts, with
// the balance and router z-losses), trained by train::Trainer on random windows of the text; then
// it reports the held-out bits per byte and continues a prompt with train::generate.
//
//   build/release/examples/moe_language_model [--text FILE] [--steps N] [--model st_moe|dense]
//
// The default text is Debian's fortunes package (/usr/share/games/fortunes/cookie, plain English),
// which scripts/lib/common.sh installs. The program exits non-zero when the loss is not finite or
// the model has not learnt below 8 bits per byte (a uniform guess over the 256 bytes).
#include <cmath>
#include <cstdio>
#include <string>

#include "tools/cli.h"
#include "train/generation.h"
#include "train/trainer.h"

namespace train = moegrad::train;

int run(const std::string& text, std::int64_t steps, const std::string& model, const std::string& prompt) {
  train::TrainConfig config;
  config.task = "text";
  config.text = text;  // the last 10% is held out for evaluation
  config.model.kind = model;
  config.model.dim = 64;
  config.model.heads = 4;
  config.model.layers = 2;
  config.model.experts = 8;
  config.model.top_n = 2;
  config.model.hidden = 128;
  config.seq_len = 64;
  config.batch_size = 8;
  config.steps = steps;
  config.warmup = std::min<std::int64_t>(20, steps / 10);
  config.lr = 3e-3;
  config.eval_every = 0;  // evaluate at the end
  config.eval_batches = 4;
  config.log_every = std::max<std::int64_t>(1, steps / 5);
  config.progress = false;
  train::Trainer trainer(config, stdout);
  const train::TrainResult r = trainer.run();
  const double bpb = r.eval_loss / std::log(2.0);
  std::printf("%s model: %lld steps in %.1f s, eval %.4f bits per byte (uniform guess: 8)\n", model.c_str(),
              static_cast<long long>(r.end_step), r.wall_s, bpb);
  trainer.model().eval();
  const std::string more = train::generate(trainer.model(), config.seq_len, prompt,
                                           {.tokens = 120, .temperature = 0.8, .top_k = 0, .seed = 1});
  std::printf("sample: %s%s\n", prompt.c_str(), more.c_str());
  const bool ok = std::isfinite(r.last_loss) && bpb < 8.0;
  if (!ok) std::printf("error: the model did not learn (eval %.4f bits per byte)\n", bpb);
  return ok ? 0 : 1;
}

int main(int argc, char** argv) {
  std::string text = "/usr/share/games/fortunes/cookie", model = "st_moe", prompt = "The ";
  std::int64_t steps = 200;
  CLI::App app{"Trains a byte-level MoE transformer language model on a text file and prints its held-out bits per\n"
               "byte and a generated sample.",
               "moe_language_model"};
  app.add_option("--text", text, "the text to train on (default: Debian's fortunes, cookie)");
  moegrad::cli::add_integer(app, "--steps", steps, 1, 1000000, "training steps");
  app.add_option("--model", model, "st_moe (top-2 of 8 experts) or dense (equal active parameters)")
      ->check(CLI::IsMember({"st_moe", "dense"}));
  app.add_option("--prompt", prompt, "the text the sample continues");
  return moegrad::cli::run(app, argc, argv, [&] { return run(text, steps, model, prompt); });
}
