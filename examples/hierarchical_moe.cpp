// lucidrains' HeirarchicalMoE (the original's spelling) trained on clustered regression.
//
// Two levels of top-2 gating: an outer gate picks 2 of 2 expert groups for each token, then an
// inner gate inside each group picks 2 of its 4 experts, so 8 experts in all, stored as
// experts.w1 [2, 4, dim, hidden]. Both gates add a balance loss to aux_loss. The data has 8
// clusters, one per expert if the gates learn to split them.
//   x [b, n, 16] -> Linear -> h;  h = h + HeirarchicalMoE(RMSNorm(h));  -> Linear -> [b, n, 16]
//
//   build/release/examples/hierarchical_moe [--steps N] (or --steps=N)
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "layers/layers.h"
#include "optim/optim.h"
#include "tools/cli.h"
#include "train/data.h"

namespace ag = moegrad::ag;
namespace core = moegrad::core;
namespace nn = moegrad::nn;
namespace optim = moegrad::optim;
namespace train = moegrad::train;

struct Model : nn::Module {
  std::shared_ptr<nn::Linear> in_proj, head;
  std::shared_ptr<nn::RMSNorm> norm;
  std::shared_ptr<nn::lmoe::HeirarchicalMoE> moe;

  explicit Model(core::Generator* gen) {
    const std::int64_t dim = 32;
    nn::lmoe::MoEOptions o;  // the same options on both levels
    o.hidden_dim = 64;
    o.second_policy_train = "random";
    o.loss_coef = 1e-2;  // aux_loss = (outer balance loss + inner balance loss) * loss_coef
    in_proj = register_module("in_proj", std::make_shared<nn::Linear>(16, dim, true, core::TensorOptions{}, gen));
    norm = register_module("norm", std::make_shared<nn::RMSNorm>(dim));
    moe = register_module("moe", std::make_shared<nn::lmoe::HeirarchicalMoE>(dim, std::pair{2, 4}, o,
                                                                            core::TensorOptions{}, gen));
    head = register_module("head", std::make_shared<nn::Linear>(dim, 16, true, core::TensorOptions{}, gen));
  }
  std::string name() const override { return "Model"; }

  struct Output {
    ag::Variable mse, aux_loss;
  };
  Output forward(const train::Batch& b) {
    ag::Variable h = in_proj->forward(ag::Variable(b.x));
    nn::moe::MoEOutput m = moe->forward(norm->forward(h));
    ag::Variable pred = head->forward(ag::add(h, m.output));
    return {ag::mean(ag::square(ag::sub(pred, ag::Variable(b.y)))), m.aux_loss};
  }
};

int run(std::int64_t steps) {

  train::ClusteredRegressionOptions data_opt{.dim = 16, .clusters = 8, .batch = 32, .seq = 16, .seed = 0};
  train::ClusteredRegression data(data_opt);
  data_opt.split = train::Split::eval;
  train::ClusteredRegression eval_data(data_opt);

  core::Generator gen(0);
  Model model(&gen);
  for (const auto& [key, t] : model.moe->state_dict())  // PyTorch's keys and shapes
    std::printf("moe.%-18s %s\n", key.c_str(), core::describe(t).c_str());

  auto evaluate = [&] {
    ag::NoGradGuard no_grad;
    model.eval();
    double total = 0;
    for (std::int64_t i = 0; i < 4; ++i) total += model.forward(eval_data.at(i)).mse.value().item<double>();
    model.train();
    return total / 4;
  };

  optim::AdamW opt(model.named_parameters(), {.lr = 3e-3, .weight_decay = 0.0});
  optim::WarmupCosine schedule(3e-3, steps / 10, steps);
  const double initial = evaluate();
  std::printf("eval MSE before training: %.5f\n", initial);

  const std::int64_t log_every = std::max<std::int64_t>(1, steps / 10);
  for (std::int64_t step = 1; step <= steps; ++step) {
    auto [mse, aux] = model.forward(data.next());
    ag::add(mse, aux).backward();
    const double grad_norm = optim::clip_grad_norm(opt.named_parameters(), 1.0);
    opt.set_lr(schedule.lr_at(opt.step_count()));
    opt.step();
    opt.zero_grad();

    const double loss = mse.value().item<double>();
    if (!std::isfinite(loss)) {
      std::printf("step %lld: loss is %f\n", static_cast<long long>(step), loss);
      return 1;
    }
    if (step % log_every == 0 || step == 1) {
      // Outer stats count tokens per expert group; inner stats count tokens per expert (group-major:
      // experts 0-3 are group 0's). Drops can happen at either level's capacity.
      std::printf("step %4lld  mse %.5f  aux %.5f  grad norm %.3f\n  outer: %s\n  inner: %s\n",
                  static_cast<long long>(step), loss, aux.value().item<double>(), grad_norm,
                  model.moe->last_outer_routing_stats().to_string().c_str(),
                  model.moe->last_routing_stats().to_string().c_str());
    }
  }

  const double final_mse = evaluate();
  std::printf("eval MSE: %.5f before, %.5f after %lld steps\n", initial, final_mse, static_cast<long long>(steps));
  if (!std::isfinite(final_mse) || (steps >= 100 && final_mse >= initial)) {
    std::printf("error: the model did not learn\n");
    return 1;
  }
  return 0;
}

int main(int argc, char** argv) {
  std::int64_t steps = 300;
  CLI::App app{"Trains lucidrains' HeirarchicalMoE (2 x 4 experts) on clustered regression.", "hierarchical_moe"};
  moegrad::cli::add_integer(app, "--steps", steps, 1, 1000000, "training steps");
  return moegrad::cli::run(app, argc, argv, [&] { return run(steps); });
}
