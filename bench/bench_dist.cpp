// bench_dist: one st_moe.MoE training step spread over the ranks of an MPI job, phase by phase.
//
//   bench_dist [--workload W1|W3] [--tokens N] [--repeat N] [--quick]          (one process)
//   mpirun -np 2 bench_dist --expert-parallel 2 ...                            (2 ranks)
//
// The global batch (--tokens, sequences of 256) is the same whatever the world size W: each
// rank takes tokens / W of it, and with --expert-parallel P (default W) holds E / P experts.
// A step is the layer's forward and backward through the MoE pipeline's own steps
// (layers/moe/pipeline.h), each phase timed on its own with leaves between phases (as
// bench_moe does), then the gradient sums of train::Parallel:
//   route     gate GEMM, softmax, top-k, slots (TopNGating::route) and the row map
//   exchange  the count exchange, the all-to-all of the rows to their experts' ranks and back,
//             forward and backward (4 row exchanges per step)
//   experts   the grouped GEMMs of this rank's experts, forward and backward
//   combine   dispatch and combine, forward and backward
//   reduce    the gradient all-reduce (gate over the world; experts over their replicas)
// Each figure is the median over --repeat steps of the slowest rank's time (max over ranks).
// Also printed: the rows and bytes this rank sent to other ranks per step, next to the model's
// count (kept choices whose expert lives on another rank x dim x 4 bytes, each direction), the
// experts' GFLOP/s and their fraction of the measured FMA peak of this rank's threads, and one
// JSON line for bench/scaling_model.py --measured (--json FILE appends it).
#include <fmt/format.h>
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include "bench/fma_peak.h"
#include "dist/world.h"
#include "layers/layers.h"
#include "tools/cli.h"
#include "train/parallel.h"

namespace ag = moegrad::ag;
namespace core = moegrad::core;
namespace dist = moegrad::dist;
namespace nn = moegrad::nn;
namespace moe = moegrad::nn::moe;
namespace train = moegrad::train;
using ag::Variable;

namespace {

struct Workload {
  std::string name;
  std::int64_t d, h, e, k;
  double st_mult, capacity_factor;  // int(d * mult * 2 / 3) == h
};

Workload workload(const std::string& name, bool quick) {
  if (quick) return name == "W3" ? Workload{"W3", 64, 32, 16, 4, 0.75, 1.25} : Workload{"W1", 32, 128, 8, 2, 6.0, 1.25};
  return name == "W3" ? Workload{"W3", 1024, 512, 64, 8, 0.75, 1.25} : Workload{"W1", 256, 1024, 8, 2, 6.0, 1.25};
}

double now_ms() {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

Variable leaf(const Variable& v) { return ag::Variable(v.value(), /*requires_grad=*/true); }

struct Sample {
  double route = 0, exchange = 0, experts = 0, combine = 0, reduce = 0, step = 0;
};

// The median over the samples of one phase (field).
double median(const std::vector<Sample>& samples, double Sample::*field) {
  std::vector<double> v;
  for (const Sample& s : samples) v.push_back(s.*field);
  std::sort(v.begin(), v.end());
  return v.empty() ? 0.0 : v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"One st_moe.MoE training step over the ranks of an MPI job, phase by phase (route, exchange, experts, "
               "combine, gradient reduction), with the bytes exchanged.",
               "bench_dist"};
  std::string name = "W1", json_path;
  std::int64_t tokens = 2048, expert_parallel = 0;
  int repeat = 10, warmup = 2;
  bool quick = false;
  app.add_option("--workload", name, "W1 (d256 h1024 e8 k2) or W3 (d1024 h512 e64 k8)")->check(CLI::IsMember({"W1", "W3"}));
  app.add_option("--tokens", tokens, "global tokens per step (sequences of 256; 32 with --quick)")
      ->check(CLI::Range(std::int64_t{1}, std::int64_t{1} << 24));
  app.add_option("--expert-parallel", expert_parallel, "P (default: the world size)")->check(CLI::Range(1, 1 << 20));
  app.add_option("--repeat", repeat, "timed steps")->check(CLI::Range(1, 100000));
  app.add_option("--warmup", warmup, "untimed steps first")->check(CLI::Range(0, 1000));
  app.add_option("--json", json_path, "append the JSON line to FILE (for bench/scaling_model.py --measured)");
  app.add_flag("--quick", quick, "tiny shapes (a smoke test)")->disable_flag_override();
  return moegrad::cli::run(app, argc, argv, [&] {
    dist::ProcessGroup& world = dist::world();
    const int w = world.size(), rank = world.rank();
    if (expert_parallel == 0) expert_parallel = w;
    const Workload wl = workload(name, quick);
    const std::int64_t seq = quick ? 32 : 256;
    if (tokens % (seq * w) != 0)
      throw moegrad::cli::UsageError(fmt::format("--tokens {} must be a multiple of {} (sequences of {} x {} ranks)",
                                                 tokens, seq * w, seq, w));
    const std::int64_t b = tokens / seq / w;  // this rank's sequences

    train::Parallel par(expert_parallel);
    core::Generator gen(7);
    nn::st::MoEOptions o;
    o.expert_hidden_mult = wl.st_mult;
    o.gating_top_n = wl.k;
    o.capacity_factor_train = o.capacity_factor_eval = wl.capacity_factor;
    auto layer = std::make_shared<nn::st::MoE>(wl.d, wl.e, o, core::TensorOptions{}, &gen);
    par.place_experts(layer);
    const moe::ExpertPlacement placement = layer->placement();
    const auto params = layer->named_parameters();
    // This rank's micro-batch and the output gradient: rank r's slice of the global batch.
    core::Generator data(100 + static_cast<std::uint64_t>(rank));
    const core::Tensor x = core::randn({b, seq, wl.d}, {}, &data);
    const core::Tensor c = core::randn({b * seq, wl.d}, {}, &data);
    const moegrad::perf::FmaPeak peak = moegrad::perf::measure_fma_peak();

    std::vector<Sample> samples;
    // kept_rows: this rank's kept choices; local_expert_rows: rows its experts ran (from every rank).
  std::int64_t sent_rows = 0, model_rows = 0, kept_rows = 0, local_expert_rows = 0;
    double expert_flops = 0;
    for (int it = 0; it < warmup + repeat; ++it) {
      world.barrier();
      Sample s;
      double t = now_ms();
      const double t0 = t;
      auto lap = [&](double& into) {
        const double n = now_ms();
        into += n - t;
        t = n;
      };
      // forward
      Variable xin(x, true);
      moe::GateResult g = layer->gate()->route(xin, false, 1.0, {});
      Variable scale = moe::dispatch_scale(g.weights, g.straight_through);
      Variable aux = ag::add(ag::mul(g.balance_loss, 1e-2), ag::mul(g.router_z_loss, 1e-3));
      lap(s.route);
      // The gate's outputs enter the later phases as leaves, so each phase's backward runs alone.
      Variable scale_leaf = leaf(scale), weights_leaf = leaf(g.weights);
      moe::Pipeline p(g.routing, layer->row_layout(), placement);
      lap(s.exchange);
      Variable rows = p.dispatch(ag::reshape(xin, {b * seq, wl.d}), scale_leaf);
      lap(s.combine);
      Variable rows_leaf = leaf(rows);
      Variable local = p.exchange(rows_leaf);
      lap(s.exchange);
      Variable local_leaf = leaf(local);
      Variable out = layer->experts()->forward_rows(local_leaf, p.local_offsets());
      lap(s.experts);
      Variable out_leaf = leaf(out);
      Variable back = p.exchange_back(out_leaf);
      lap(s.exchange);
      Variable back_leaf = leaf(back);
      Variable y = p.combine(back_leaf, weights_leaf);
      Variable loss = ag::sum(ag::mul(y, ag::constant(c)));
      lap(s.combine);
      // backward, phase by phase in reverse
      loss.backward();
      lap(s.combine);
      back.backward(back_leaf.grad());
      lap(s.exchange);
      out.backward(out_leaf.grad());
      lap(s.experts);
      local.backward(local_leaf.grad());
      lap(s.exchange);
      rows.backward(rows_leaf.grad());  // dispatch: the input rows and the scale
      lap(s.combine);
      ag::add(ag::add(ag::sum(ag::mul(scale, ag::constant(scale_leaf.grad()))),
                      ag::sum(ag::mul(g.weights, ag::constant(weights_leaf.grad())))),
              aux)
          .backward();  // the gate, through its three outputs at once
      lap(s.route);
      par.reduce_gradients(params);
      lap(s.reduce);
      s.step = t - t0;
      layer->zero_grad();
      // The slowest rank's figures.
      core::Tensor all = core::from_vector(std::vector<double>{s.route, s.exchange, s.experts, s.combine, s.reduce, s.step});
      world.all_reduce(all, dist::Reduction::max);
      const std::vector<double> m = all.to_vector<double>();
      if (it >= warmup) samples.push_back({m[0], m[1], m[2], m[3], m[4], m[5]});
      // Rows: what this rank sent to other ranks, and what the routing says it must send.
      const std::vector<std::int64_t> off = p.rows().offsets.to_vector<std::int64_t>();
      kept_rows = p.rows().num_rows;
      const std::int64_t own_rows = off[static_cast<std::size_t>(placement.first + placement.count)] -
                                    off[static_cast<std::size_t>(placement.first)];
      model_rows = placement.distributed() ? kept_rows - own_rows : 0;
      sent_rows = p.exchanged_rows();
      const std::int64_t local_rows = local_leaf.shape()[0];
      local_expert_rows = local_rows;
      expert_flops = 3.0 * 2.0 * static_cast<double>(local_rows) * static_cast<double>(wl.d) *
                     static_cast<double>(3 * wl.h);  // (2h x d) + (d x h) per row, forward + 2x backward
    }
    Sample med;
    for (double Sample::*field : {&Sample::route, &Sample::exchange, &Sample::experts, &Sample::combine, &Sample::reduce,
                                  &Sample::step})
      med.*field = median(samples, field);
    const std::int64_t reduce_bytes = par.reduced_bytes(params);
    const double elem = 4.0, bytes_each_way = static_cast<double>(sent_rows) * static_cast<double>(wl.d) * elem;
    const double gflops = expert_flops / (med.experts * 1e6);
    const double rank_peak = peak.gflops * omp_get_max_threads() / std::max(1, peak.threads);
    if (rank == 0) {
      fmt::print("bench_dist {} st_moe.MoE: d{} h{} e{} k{}, {} tokens per step over {} rank(s) x {} thread(s), "
                 "expert-parallel {}\n", wl.name, wl.d, wl.h, wl.e, wl.k, tokens, w, omp_get_max_threads(),
                 expert_parallel);
      fmt::print("  step {:.2f} ms (slowest rank, median of {}): route {:.2f}, exchange {:.2f}, experts {:.2f}, "
                 "combine {:.2f}, reduce {:.2f}\n", med.step, repeat, med.route, med.exchange, med.experts, med.combine,
                 med.reduce);
      fmt::print("  rank 0 sent {} of its {} kept rows to other ranks; the routing says {} (kept choices of experts "
                 "on other ranks): {} bytes each direction per exchange, model {} bytes ({})\n", sent_rows, kept_rows,
                 model_rows, static_cast<std::int64_t>(bytes_each_way),
                 static_cast<std::int64_t>(static_cast<double>(model_rows) * static_cast<double>(wl.d) * elem),
                 sent_rows == model_rows ? "equal" : "DIFFERENT");
      fmt::print("  experts {:.1f} GFLOP/s on rank 0 = {:.2f} of its threads' FMA peak ({:.0f} GFLOP/s, {})\n", gflops,
                 gflops / rank_peak, rank_peak, peak.isa);
      const std::string line = fmt::format(
          "{{\"workload\":\"{}\",\"model\":\"st_moe\",\"world\":{},\"threads\":{},\"expert_parallel\":{},"
          "\"tokens_per_rank\":{},\"dim\":{},\"hidden\":{},\"experts\":{},\"top_k\":{},\"layers\":1,\"elem_bytes\":4,"
          "\"step_ms\":{:.3f},\"route_ms\":{:.3f},\"exchange_ms\":{:.3f},\"experts_ms\":{:.3f},\"combine_ms\":{:.3f},"
          "\"reduce_ms\":{:.3f},\"rows\":{},\"expert_rows\":{},\"exchange_bytes\":{},\"model_exchange_bytes\":{},"
          "\"reduce_bytes\":{},\"gemm_gflops\":{:.1f},\"fma_peak_gflops\":{:.1f}}}",
          wl.name, w, omp_get_max_threads(), expert_parallel, b * seq, wl.d, wl.h, wl.e, wl.k, med.step, med.route,
          med.exchange, med.experts, med.combine, med.reduce, kept_rows, local_expert_rows,
          static_cast<std::int64_t>(4 * bytes_each_way),
          static_cast<std::int64_t>(4.0 * static_cast<double>(model_rows) * static_cast<double>(wl.d) * elem),
          reduce_bytes, gflops, rank_peak);
      fmt::print("{}\n", line);
      if (!json_path.empty()) {
        std::FILE* f = std::fopen(json_path.c_str(), "a");
        if (!f) throw moegrad::Error(fmt::format("[bench_dist] cannot open '{}' for appending", json_path));
        fmt::print(f, "{}\n", line);
        std::fclose(f);
      }
    }
    return 0;
  });
}
