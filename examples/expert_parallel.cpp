// One st-moe MoE layer trained expert-parallel across the ranks of an MPI job:
//
//   mpirun -np 2 build/release/examples/expert_parallel --expert-parallel 2 [--steps N]
//   build/release/examples/expert_parallel                 (one process: every expert local)
//
// Model: x [b, n, 16] -> Linear -> x + MoE(RMSNorm(x)) (8 experts, top-2) -> Linear -> [b, n, 16],
// MSE on the clustered-regression task plus the MoE's auxiliary losses. With W ranks and
// --expert-parallel P, each rank holds 8 / P experts; it routes its own micro-batch, the
// pipeline sends each token row to the rank that owns its expert and brings the result back
// (an all-to-all each way, differentiable), and train::Parallel sums every gradient over the
// ranks that hold its parameter before the optimizer step. Micro-batch i of a step is the same
// data whatever W, so the run computes what one process would on W micro-batches per step.
#include <fmt/format.h>

#include <cmath>
#include <string>

#include "dist/world.h"
#include "layers/layers.h"
#include "optim/optim.h"
#include "tools/cli.h"
#include "train/data.h"
#include "train/parallel.h"

namespace ag = moegrad::ag;
namespace core = moegrad::core;
namespace dist = moegrad::dist;
namespace nn = moegrad::nn;
namespace optim = moegrad::optim;
namespace train = moegrad::train;

struct Model : nn::Module {
  static constexpr std::int64_t dim = 16, width = 32, experts = 8;
  std::shared_ptr<nn::Linear> in, out;
  std::shared_ptr<nn::RMSNorm> norm;
  std::shared_ptr<nn::st::MoE> moe;

  explicit Model(core::Generator* gen) {
    nn::st::MoEOptions o;
    o.gating_top_n = 2;
    o.expert_hidden_mult = 2.0;
    in = register_module("in", std::make_shared<nn::Linear>(dim, width, true, core::TensorOptions{}, gen));
    norm = register_module("norm", std::make_shared<nn::RMSNorm>(width));
    moe = register_module("moe", std::make_shared<nn::st::MoE>(width, experts, o, core::TensorOptions{}, gen));
    out = register_module("out", std::make_shared<nn::Linear>(width, dim, true, core::TensorOptions{}, gen));
  }
  std::string name() const override { return "Model"; }
};

int main(int argc, char** argv) {
  CLI::App app{"Trains one st-moe MoE layer expert-parallel over the ranks of an MPI job (or in one process).",
               "expert_parallel"};
  std::int64_t steps = 100, expert_parallel = 1;
  app.add_option("--steps", steps, "optimizer steps")->check(CLI::Range(1, 1000000));
  app.add_option("--expert-parallel", expert_parallel, "P: experts spread over groups of P ranks")
      ->check(CLI::Range(1, 1 << 20));
  return moegrad::cli::run(app, argc, argv, [&] {
    train::Parallel par(expert_parallel);  // joins the MPI job when launched by mpirun
    const int rank = par.rank(), world = par.world_size();
    core::Generator gen(0);  // the same initial weights on every rank
    auto model = std::make_shared<Model>(&gen);
    par.place_experts(model);  // this rank keeps 8 / P experts
    optim::AdamW opt(model->named_parameters(), 3e-3);
    train::ClusteredRegression data({.dim = Model::dim, .clusters = 8, .batch = 8, .seq = 16, .seed = 1});
    if (rank == 0)
      fmt::print("{} rank(s), expert-parallel {}: rank 0 holds experts {}..{} of {} ({} parameters here)\n", world,
                 expert_parallel, model->moe->placement().first,
                 model->moe->placement().first + model->moe->placement().count - 1, Model::experts,
                 model->num_parameters());
    double first = 0, last = 0;
    for (std::int64_t step = 0; step < steps; ++step) {
      // Micro-batch step * W + rank: together the ranks take W micro-batches per step.
      const train::Batch b = data.at(step * world + rank);
      gen.manual_seed(1000003 * static_cast<std::uint64_t>(step * world + rank));  // gate noise of that micro-batch
      ag::Variable h = model->in->forward(ag::constant(b.x));
      nn::moe::MoEForward f;
      f.noise_gates = true;
      const nn::moe::MoEOutput r = model->moe->forward(model->norm->forward(h), f);
      const ag::Variable pred = model->out->forward(ag::add(h, r.output));
      const ag::Variable mse = ag::mean(ag::square(ag::sub(pred, ag::constant(b.y))));
      ag::div(ag::add(mse, r.aux_loss), static_cast<double>(world)).backward();
      par.reduce_gradients(opt.named_parameters());
      par.clip_grad_norm(opt.named_parameters(), 1.0);
      opt.step();
      opt.zero_grad();
      const double loss = dist::all_reduce_value(par.world(), core::sum(mse.value()).item<double>()) / world;
      if (step == 0) first = loss;
      last = loss;
      if (rank == 0 && (step % 20 == 0 || step + 1 == steps)) fmt::print("step {:4d}  mse {:.5f}\n", step + 1, loss);
    }
    // The replicated parameters must be the same on every rank (the gradient sums made them so).
    std::string replicated;
    for (const auto& [name, p] : model->named_parameters())
      if (name.find("experts.") == std::string::npos)
        replicated += fmt::format("{}:{};", name, fmt::join(core::reshape(p.value(), {-1}).to_vector<float>(), ","));
    dist::check_same(par.world(), "the replicated parameters", replicated);
    if (!(std::isfinite(last) && last < first)) {
      if (rank == 0) fmt::print(stderr, "expert_parallel: the loss did not go down ({} -> {})\n", first, last);
      return 1;
    }
    if (rank == 0) fmt::print("mse {:.5f} -> {:.5f}; replicated parameters identical on all {} rank(s)\n", first, last, world);
    return 0;
  });
}
