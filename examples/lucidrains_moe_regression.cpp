// lucidrains' MoE (mixture-of-experts 0.2.3, top-2 gating) trained on clustered regression.
//
// Every token comes from one of 8 clusters, and each cluster has its own target function, so a
// mixture of experts can give each cluster its own experts. The model is written out by hand:
//   x [b, n, 16] -> Linear -> h;  h = h + MoE(RMSNorm(h));  -> Linear -> prediction [b, n, 16]
// and so is the loop (the PyTorch loop, line for line): forward, MSE + the MoE's aux loss,
// backward, clip, schedule, step, zero_grad.
//
//   build/release/examples/lucidrains_moe_regression [--steps N] (or --steps=N)
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

// The model, as an nn.Module subclass would be in PyTorch: children registered by name give
// named_parameters() ("moe.gate.w_gating", "moe.experts.w1", ...) and state_dict() keys.
struct Model : nn::Module {
  std::shared_ptr<nn::Linear> in_proj, head;
  std::shared_ptr<nn::RMSNorm> norm;
  std::shared_ptr<nn::lmoe::MoE> moe;

  explicit Model(core::Generator* gen) {
    const std::int64_t dim = 32;
    nn::lmoe::MoEOptions o;
    o.hidden_dim = 64;                  // each expert: dim -> 64 -> dim (ReLU)
    o.second_policy_train = "random";   // a token goes to its 2nd expert with prob. gate_2 / threshold
    o.loss_coef = 1e-2;                 // aux_loss = balance loss * loss_coef
    in_proj = register_module("in_proj", std::make_shared<nn::Linear>(16, dim, true, core::TensorOptions{}, gen));
    norm = register_module("norm", std::make_shared<nn::RMSNorm>(dim));
    moe = register_module("moe", std::make_shared<nn::lmoe::MoE>(dim, /*num_experts=*/8, o, core::TensorOptions{}, gen));
    head = register_module("head", std::make_shared<nn::Linear>(dim, 16, true, core::TensorOptions{}, gen));
  }

  std::string name() const override { return "Model"; }

  struct Output {
    ag::Variable mse, aux_loss;
  };
  Output forward(const train::Batch& b) {
    ag::Variable h = in_proj->forward(ag::Variable(b.x));
    nn::moe::MoEOutput m = moe->forward(norm->forward(h));  // m.output [b, n, dim], m.aux_loss 0-d
    ag::Variable pred = head->forward(ag::add(h, m.output));
    return {ag::mean(ag::square(ag::sub(pred, ag::Variable(b.y)))), m.aux_loss};
  }
};

int run(std::int64_t steps) {

  // Data: 8 clusters in 16 dimensions, 32 x 16 tokens per batch. The eval split draws other
  // samples of the same task (same centres and target maps).
  train::ClusteredRegressionOptions data_opt{.dim = 16, .clusters = 8, .batch = 32, .seq = 16, .seed = 0};
  train::ClusteredRegression data(data_opt);
  data_opt.split = train::Split::eval;
  train::ClusteredRegression eval_data(data_opt);

  // One generator seeds every initialiser and, during training, the MoE's random draws (the
  // 'random' second-expert policy), so runs are reproducible.
  core::Generator gen(0);
  Model model(&gen);
  std::printf("%s\n", model.to_string().c_str());  // like print(model) in PyTorch

  auto evaluate = [&] {  // MSE over 4 fixed eval batches, without recording a graph
    ag::NoGradGuard no_grad;
    model.eval();  // eval-mode capacity factor (2.0) and second-expert policy
    double total = 0;
    for (std::int64_t i = 0; i < 4; ++i) total += model.forward(eval_data.at(i)).mse.value().item<double>();
    model.train();
    return total / 4;
  };

  optim::AdamW opt(model.named_parameters(), {.lr = 3e-3, .weight_decay = 0.0});
  optim::WarmupCosine schedule(3e-3, /*warmup_steps=*/steps / 10, /*total_steps=*/steps);

  const double initial = evaluate();
  std::printf("eval MSE before training: %.5f\n", initial);
  const std::int64_t log_every = std::max<std::int64_t>(1, steps / 10);
  for (std::int64_t step = 1; step <= steps; ++step) {
    auto [mse, aux] = model.forward(data.next());
    ag::add(mse, aux).backward();  // the balance loss pushes the gate to spread tokens evenly
    const double grad_norm = optim::clip_grad_norm(opt.named_parameters(), 1.0);
    opt.set_lr(schedule.lr_at(opt.step_count()));
    opt.step();
    opt.zero_grad();

    const double loss = mse.value().item<double>();
    if (!std::isfinite(loss)) {
      std::printf("step %lld: loss is %f\n", static_cast<long long>(step), loss);
      return 1;
    }
    if (step % log_every == 0 || step == 1)
      std::printf("step %4lld  mse %.5f  aux %.5f  grad norm %.3f  lr %.2e\n  routing: %s\n",
                  static_cast<long long>(step), loss, aux.value().item<double>(), grad_norm, opt.lr(),
                  model.moe->last_routing_stats().to_string().c_str());
  }

  // Which experts took which clusters? The gate's route() gives each token's two choices;
  // column 0 is its top-1 expert. After training, each cluster should favour a few experts.
  const double final_mse = evaluate();
  {
    ag::NoGradGuard no_grad;
    model.eval();
    train::Batch b = eval_data.at(0);
    auto routed = model.moe->gate()->route(model.norm->forward(model.in_proj->forward(ag::Variable(b.x))));
    const auto expert = routed.routing.expert.to_vector<std::int64_t>();  // [b * n, 2]
    const auto cluster = b.group.to_vector<std::int64_t>();              // [b * n]
    std::printf("top-1 expert counts per cluster (rows: clusters, columns: experts):\n");
    for (std::int64_t k = 0; k < data_opt.clusters; ++k) {
      std::int64_t count[8] = {};
      for (std::size_t t = 0; t < cluster.size(); ++t)
        if (cluster[t] == k) ++count[expert[2 * t]];
      std::printf("  cluster %lld:", static_cast<long long>(k));
      for (auto c : count) std::printf(" %4lld", static_cast<long long>(c));
      std::printf("\n");
    }
  }
  std::printf("eval MSE: %.5f before, %.5f after %lld steps\n", initial, final_mse, static_cast<long long>(steps));
  if (!std::isfinite(final_mse) || (steps >= 100 && final_mse >= initial)) {
    std::printf("error: the model did not learn\n");
    return 1;
  }
  return 0;
}

int main(int argc, char** argv) {
  std::int64_t steps = 300;
  CLI::App app{"Trains lucidrains' MoE (8 experts, top-2) on clustered regression.", "lucidrains_moe_regression"};
  moegrad::cli::add_integer(app, "--steps", steps, 1, 1000000, "training steps");
  return moegrad::cli::run(app, argc, argv, [&] { return run(steps); });
}
