// Fused causal attention (core/ops/attention.h) forward + backward against the same run's GEMM
// rate, and the memory the autograd graph keeps for backward. One JSON line per measurement.
//
// Useful FLOPs, per (b, h), with P = T (T + 1) / 2 visible (query, key) pairs: the forward's
// two products (Q K^T, P V) are 2 P D multiply-adds each, the backward's four (dV = P^T dO,
// dP = dO V^T, dQ = dS K, dK = dS^T Q) the same: 6 products x 2 P D = 12 P D FLOPs, about
// 6 T^2 D (half the dense count). The backward's recomputation of Q K^T is not counted.
// The GEMM rate is core::matmul on the dense attention's own shapes, [B H, T, D] @ [B H, D, T]
// and [B H, T, T] @ [B H, T, D], at its full FLOP count, timed in the same run.
#include <fmt/format.h>
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <string>
#include <vector>

#include "autograd/autograd.h"
#include "core/build_info.h"
#include "core/ops.h"
#include "core/ops/attention.h"
#include "tools/cli.h"

using namespace moegrad;
using namespace moegrad::core;
namespace cli = moegrad::cli;

namespace {

struct Config {
  std::int64_t batch = 8, heads = 4, seq = 256, dim = 64;
  int samples = 7;
  double sample_ms = 200;
  Device device = Device::cpu();
};

double now_ms() {
  using namespace std::chrono;
  return duration<double, std::milli>(steady_clock::now().time_since_epoch()).count();
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const std::size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

// Median ms per call of f and of g, sampled alternately after a warm-up (each sample waits
// for the device).
std::pair<double, double> time_pair(const Config& cfg, const std::function<void()>& f, const std::function<void()>& g) {
  auto run = [&](const std::function<void()>& h, int iters) {
    const double t0 = now_ms();
    for (int i = 0; i < iters; ++i) h();
    synchronize(cfg.device);
    return (now_ms() - t0) / iters;
  };
  run(f, 1);
  run(g, 1);
  const int fi = std::max(1, static_cast<int>(cfg.sample_ms / std::max(1e-3, run(f, 1))));
  const int gi = std::max(1, static_cast<int>(cfg.sample_ms / std::max(1e-3, run(g, 1))));
  std::vector<double> tf, tg;
  for (int s = 0; s < cfg.samples; ++s) {
    tf.push_back(run(f, fi));
    tg.push_back(run(g, gi));
  }
  return {median(tf), median(tg)};
}

int run_bench(const Config& cfg) {
  const std::int64_t B = cfg.batch, H = cfg.heads, T = cfg.seq, D = cfg.dim, BH = B * H;
  const Shape shape{B, H, T, D};
  Generator gen(1);
  auto make = [&](const Shape& s) { return to_device(randn(s, {}, &gen), cfg.device); };
  const Tensor q = make(shape), k = make(shape), v = make(shape), gout = make(shape);
  const double scale = 1.0 / std::sqrt(static_cast<double>(D));
  fmt::print("{{\"bench\":\"info\",\"device\":\"{}\",\"omp_threads\":{},\"shape\":[{},{},{},{}]}}\n",
             cfg.device.str(), omp_get_max_threads(), B, H, T, D);

  // Attention forward + backward (the kernels, without the graph) vs the dense GEMMs.
  auto attention = [&] {
    const AttentionForward f = causal_attention_forward(q, k, v, scale);
    const AttentionGrads g = causal_attention_backward(q, k, v, f.out, f.lse, gout, scale);
  };
  const Tensor qk_a = reshape(q, {BH, T, D}), qk_b = make({BH, D, T}), pv_a = make({BH, T, T}),
               pv_b = reshape(v, {BH, T, D});
  auto gemms = [&] {
    const Tensor s = matmul(qk_a, qk_b);  // [BH, T, T]
    const Tensor o = matmul(pv_a, pv_b);  // [BH, T, D]
  };
  const auto [attn_ms, gemm_ms] = time_pair(cfg, attention, gemms);
  const double pairs = static_cast<double>(T) * static_cast<double>(T + 1) / 2;
  const double attn_flops = 12.0 * pairs * static_cast<double>(D) * static_cast<double>(BH);
  const double gemm_flops = 2 * 2.0 * static_cast<double>(BH) * T * T * D;
  const double attn_rate = attn_flops / attn_ms * 1e-6, gemm_rate = gemm_flops / gemm_ms * 1e-6;
  fmt::print(
      "{{\"bench\":\"attention\",\"op\":\"causal_attention fwd+bwd\",\"ms\":{:.3f},\"useful_gflop\":{:.4f},"
      "\"gflops\":{:.2f},\"gemm_ms\":{:.3f},\"gemm_gflops\":{:.2f},\"ratio\":{:.3f},\"target\":0.5}}\n",
      attn_ms, attn_flops * 1e-9, attn_rate, gemm_ms, gemm_rate, attn_rate / gemm_rate);

  // What the graph keeps for backward: allocated bytes after an autograd forward, beyond the
  // inputs, against one [B, H, T, T] f32 tensor; and the peak over forward + backward.
  const ag::Variable vq(q, true), vk(k, true), vv(v, true);
  synchronize(cfg.device);
  const auto base = memory_stats(cfg.device).allocated;
  reset_peak_memory(cfg.device);
  double held = 0, peak = 0;
  {
    ag::Variable out = ag::causal_attention(vq, vk, vv, scale);
    synchronize(cfg.device);
    held = static_cast<double>(memory_stats(cfg.device).allocated - base);
    out.backward(gout);
    synchronize(cfg.device);
    peak = static_cast<double>(memory_stats(cfg.device).peak_allocated - base);
  }
  const double probs = static_cast<double>(BH) * T * T * 4, out_lse = static_cast<double>(BH) * T * (D + 1) * 4;
  fmt::print(
      "{{\"bench\":\"attention_memory\",\"held_for_backward_bytes\":{:.0f},\"out_plus_lse_bytes\":{:.0f},"
      "\"one_BHTT_f32_bytes\":{:.0f},\"peak_fwd_bwd_bytes\":{:.0f}}}\n",
      held, out_lse, probs, peak);
  fmt::print("attention fwd+bwd {}x{}x{}x{}: {:.2f} GFLOP/s useful vs GEMM {:.2f} GFLOP/s: ratio {:.2f} (target 0.5); "
             "held for backward {:.2f} MiB (out + lse {:.2f} MiB; one [B,H,T,T] f32 would be {:.2f} MiB)\n",
             B, H, T, D, attn_rate, gemm_rate, attn_rate / gemm_rate, held / 1048576, out_lse / 1048576,
             probs / 1048576);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Fused causal attention forward + backward vs the same run's GEMM rate, and the memory the graph "
               "keeps for backward; one JSON line per measurement.",
               "bench_attention"};
  Config cfg;
  bool quick = false;
  std::string device = "cpu";
  constexpr std::int64_t kMax = std::numeric_limits<std::int64_t>::max();
  auto* batch = cli::add_integer(app, "--batch", cfg.batch, 1, kMax, "B");
  auto* heads = cli::add_integer(app, "--heads", cfg.heads, 1, kMax, "H");
  auto* seq = cli::add_integer(app, "--seq", cfg.seq, 1, kMax, "T");
  cli::add_integer(app, "--dim", cfg.dim, 1, kMax, "D");
  app.add_option("--device", device, "cpu or cuda (default cpu)")->check(CLI::IsMember({"cpu", "cuda"}));
  app.add_flag("--quick", quick, "small sizes (B 2, H 2, T 128 unless given) and few samples (CI smoke test)")
      ->disable_flag_override();
  return cli::run(app, argc, argv, [&] {
    if (quick) {
      if (batch->count() == 0) cfg.batch = 2;
      if (heads->count() == 0) cfg.heads = 2;
      if (seq->count() == 0) cfg.seq = 128;
      cfg.samples = 3;
      cfg.sample_ms = 20;
    }
    if (device == "cuda") {
      if (build_info().cuda_devices == 0)
        throw cli::UsageError("--device cuda: no CUDA device (or built without CUDA)");
      cfg.device = Device::cuda(0);
    }
    return run_bench(cfg);
  });
}
