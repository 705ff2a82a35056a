// A small token model of st-moe-pytorch SparseMoEBlocks, trained on a permuted-copy task with
// gate noise and both auxiliary losses (load balance and router z-loss).
//
// Task: y_t = pi(x_t) for a fixed random permutation pi of a 64-token vocabulary. Model:
//   ids [b, n] -> Embedding -> SparseMoEBlock x 2 -> RMSNorm -> Linear -> logits [b, n, 64]
// Each SparseMoEBlock is x + MoE(RMSNorm(x)) followed by x + FeedForward(x); its MoE routes each
// token to its top-2 of 8 experts. Loss: cross-entropy + each block's aux_loss (st-moe's total_aux_loss).
//
//   build/release/examples/sparse_moe_block_sequence [--steps N] (or --steps=N)
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

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
  static constexpr std::int64_t vocab = 64, dim = 32;
  std::shared_ptr<nn::Embedding> embed;
  std::vector<std::shared_ptr<nn::st::SparseMoEBlock>> blocks;
  std::shared_ptr<nn::RMSNorm> norm;
  std::shared_ptr<nn::Linear> head;

  explicit Model(core::Generator* gen) {
    nn::st::MoEOptions o;            // st_moe_pytorch.MoE's keyword arguments
    o.gating_top_n = 2;
    o.expert_hidden_mult = 2.0;      // expert hidden width int(32 * 2 * 2/3) = 42 (GEGLU)
    o.balance_loss_coef = 1e-2;      // aux_loss = 1e-2 * balance + 1e-3 * z-loss
    o.router_z_loss_coef = 1e-3;
    embed = register_module("embed", std::make_shared<nn::Embedding>(vocab, dim, core::TensorOptions{}, gen));
    auto list = register_module("blocks", std::make_shared<nn::Module>());  // an nn.ModuleList
    for (int i = 0; i < 2; ++i) {
      auto moe = std::make_shared<nn::st::MoE>(dim, /*num_experts=*/8, o, core::TensorOptions{}, gen);
      blocks.push_back(list->register_module(std::to_string(i), std::make_shared<nn::st::SparseMoEBlock>(
                                                                    moe, /*add_ff_before=*/false, /*add_ff_after=*/true, gen)));
    }
    norm = register_module("norm", std::make_shared<nn::RMSNorm>(dim));
    head = register_module("head", std::make_shared<nn::Linear>(dim, vocab, true, core::TensorOptions{}, gen));
  }
  std::string name() const override { return "Model"; }

  struct Output {
    ag::Variable loss, aux_loss;           // cross-entropy; sum of the blocks' aux_loss
    double balance = 0, z = 0, accuracy = 0;  // unweighted losses summed over blocks
  };
  Output forward(const train::Batch& b) {
    Output out;
    ag::Variable h = embed->forward(b.x);  // [b, n, dim]
    out.aux_loss = ag::constant(core::zeros({}));
    for (auto& block : blocks) {
      // Gate noise: Gumbel noise * noise_mult added to the router logits, so that tokens near a
      // decision boundary explore other experts. Like the original, the gate adds it whenever
      // asked, so ask only in training (noise_gates=self.training).
      nn::moe::MoEOutput r = block->forward(h, /*noise_gates=*/is_training(), /*noise_mult=*/1.0);
      h = r.output;
      out.aux_loss = ag::add(out.aux_loss, ag::sum(r.aux_loss));  // 0-d, (1,) in eval
      out.balance += core::sum(r.balance_loss.value()).item<double>();
      out.z += core::sum(r.router_z_loss.value()).item<double>();
    }
    ag::Variable logits = ag::reshape(head->forward(norm->forward(h)), {-1, vocab});  // [b * n, V]
    const core::Tensor target = core::reshape(b.y, {-1, 1});
    // F.cross_entropy(logits, target) = -mean(log_softmax(logits).gather(1, target))
    out.loss = ag::neg(ag::mean(ag::gather(ag::log_softmax(logits, -1), 1, target)));
    const core::Tensor hit = core::eq(core::argmax(logits.value(), 1, true), target);
    out.accuracy = core::mean(core::to_dtype(hit, core::DType::f64)).item<double>();
    return out;
  }
};

int run(std::int64_t steps) {

  train::PermutedCopy data({.vocab = Model::vocab, .batch = 32, .seq = 16, .seed = 0});
  train::PermutedCopy eval_data({.vocab = Model::vocab, .batch = 32, .seq = 16, .seed = 0, .split = train::Split::eval});
  core::Generator gen(0);  // initialisers, then gate noise and routing draws
  Model model(&gen);
  std::printf("%lld parameters\n", static_cast<long long>(model.num_parameters()));

  auto evaluate = [&] {  // eval mode: no gate noise, eval capacity factor, aux losses are (1,) zeros
    ag::NoGradGuard no_grad;
    model.eval();
    Model::Output o = model.forward(eval_data.at(0));
    model.train();
    return std::pair{o.loss.value().item<double>(), o.accuracy};
  };

  optim::AdamW opt(model.named_parameters(), {.lr = 3e-3, .weight_decay = 0.0});
  optim::WarmupCosine schedule(3e-3, steps / 10, steps);
  const auto [loss0, acc0] = evaluate();
  std::printf("before training: eval loss %.4f, accuracy %.3f\n", loss0, acc0);

  const std::int64_t log_every = std::max<std::int64_t>(1, steps / 10);
  for (std::int64_t step = 1; step <= steps; ++step) {
    Model::Output o = model.forward(data.next());
    ag::add(o.loss, o.aux_loss).backward();
    optim::clip_grad_norm(opt.named_parameters(), 1.0);
    opt.set_lr(schedule.lr_at(opt.step_count()));
    opt.step();
    opt.zero_grad();

    const double loss = o.loss.value().item<double>();
    if (!std::isfinite(loss)) {
      std::printf("step %lld: loss is %f\n", static_cast<long long>(step), loss);
      return 1;
    }
    if (step % log_every == 0 || step == 1) {
      std::printf("step %4lld  loss %.4f  acc %.3f  balance %.4f  z-loss %.4f  (aux %.5f)\n",
                  static_cast<long long>(step), loss, o.accuracy, o.balance, o.z, o.aux_loss.value().item<double>());
      for (std::size_t i = 0; i < model.blocks.size(); ++i)
        std::printf("  block %zu: %s\n", i, model.blocks[i]->moe()->last_routing_stats().to_string().c_str());
    }
  }

  const auto [loss1, acc1] = evaluate();
  std::printf("eval loss %.4f -> %.4f, accuracy %.3f -> %.3f after %lld steps\n", loss0, loss1, acc0, acc1,
              static_cast<long long>(steps));
  if (!std::isfinite(loss1) || (steps >= 100 && loss1 >= loss0)) {
    std::printf("error: the model did not learn\n");
    return 1;
  }
  return 0;
}

int main(int argc, char** argv) {
  std::int64_t steps = 200;
  CLI::App app{"Trains two st-moe SparseMoEBlocks (8 experts, top-2, gate noise) on permuted copy.", "sparse_moe_block_sequence"};
  moegrad::cli::add_integer(app, "--steps", steps, 1, 1000000, "training steps");
  return moegrad::cli::run(app, argc, argv, [&] { return run(steps); });
}
