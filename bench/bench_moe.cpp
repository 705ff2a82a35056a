// MoE layer throughput on the index-based fast path, one JSON line per (workload, model):
//   fwd_ms    forward in train mode with the graph recorded (as in training);
//   step_ms   zero_grad + forward + backward of L = sum(out * g) + aux loss (fixed random g);
//   gflops    useful FLOP/s of the step: the expert GEMMs of the rows the routing kept
//             (st: 2 rows (d 2h + h d), lucidrains: 2 rows (d h + h d); step = 3x forward);
//             tflops = the same in TFLOP/s;
//   gemm_*    the same-run denominator, and ratio = layer rate / GEMM rate:
//               cpu   the f32 GEMM engine's sgemm (core/cpu/gemm_engine.h: oneDNN or OpenBLAS) on
//                     the same per-expert GEMM shapes (same rows per expert,
//                     same transposes), called and scheduled as core's grouped GEMM calls them
//                     (cpu::gemm_strided: one product split over the threads; experts side by
//                     side, one per thread, when they balance, as cpu::gemm_grouped does);
//               cuda  one dense GEMM of the same total size through core::matmul (cuBLAS):
//                     the kept rows R as [R, d] @ [d, h1] and [R, h] @ [h, d] (forward) and
//                     the four backward GEMMs (dact, dW2, dx, dW1), the layer's weight layout;
//   experts_* the experts' phase (forward_rows: both GEMMs and the activation) alone, as a
//             rate over the same denominator;
//   *_share   time in routing + dispatch + combine over the sum of the phases, the phases
//             being the layer's own pipeline steps called in its order (gate route + the
//             moe::Pipeline's row map, Pipeline::dispatch, exchange, the experts' forward_rows,
//             exchange_back, combine), each also run backward on its own graph (leaf inputs,
//             random output gradient); exchange_ms / exchange_bwd_ms are exchange +
//             exchange_back (the identity in one process: about 0);
//   step_peak_mb  the step's peak allocator growth (core::memory_stats(device)): peak
//             allocated bytes during zero_grad + forward + backward, reset just before it,
//             minus the bytes allocated then (weights, x, g, the denominator's buffers).
// On CUDA every clock read first waits for the device (core::synchronize; a no-op on the CPU),
// so each interval covers the work queued in it. Every measurement of a repeat is taken once
// per repeat (interleaved); figures are medians over the repeats after warm-up (the peak: the
// largest). Progress goes to stderr, JSON lines to stdout. Each line records OMP_WAIT_POLICY
// and the load average: with the pthread OpenBLAS, libgomp's spinning workers halve the
// layers' speed on two cores (docs/benchmarks.md).
#include <cblas.h>
#include <fmt/format.h>
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cctype>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <limits>
#include <memory>
#include <numeric>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include "bench/fma_peak.h"
#include "core/build_info.h"
#include "core/cpu/blas_gemm.h"
#include "core/cpu/gemm_engine.h"
#include "core/memory.h"
#include "core/ops.h"
#include "layers/layers.h"
#include "tools/cli.h"

using namespace moegrad;
using core::Tensor;
using core::TensorOptions;
using ag::Variable;
namespace rt = moegrad::nn::moe;

namespace {

struct Workload {
  std::string name;
  std::int64_t d, h, e, k, b, n;
  double st_mult;  // st::MoE expert_hidden_mult with int(d * mult * 2 / 3) == h
};

// The issues' workloads: CPU (issue 3) 2048 / 1024 / 2048 tokens, GPU (issue 5) 16384 tokens
// (8 sequences of 2048) each; --quick keeps the expert counts and top-k and shrinks the rest
// (the same tiny shapes on both devices).
std::vector<Workload> workloads(bool quick, bool cuda) {
  if (quick)
    return {{"W1", 32, 128, 8, 2, 2, 32, 6.0}, {"W2", 128, 512, 8, 2, 2, 32, 6.0}, {"W3", 128, 64, 64, 8, 2, 32, 0.75}};
  if (cuda)
    return {{"W1", 256, 1024, 8, 2, 8, 2048, 6.0}, {"W2", 1024, 4096, 8, 2, 8, 2048, 6.0},
            {"W3", 1024, 512, 64, 8, 8, 2048, 0.75}};
  return {{"W1", 256, 1024, 8, 2, 8, 256, 6.0}, {"W2", 1024, 4096, 8, 2, 4, 256, 6.0},
          {"W3", 1024, 512, 64, 8, 8, 256, 0.75}};
}

const char* const kLucidrains = "lucidrains.MoE";
const char* const kStMoE = "st_moe.MoE";

struct Config {
  std::optional<std::string> workload, model;
  std::vector<std::string> gemm;  // --gemm: CPU f32 GEMM engines, each in turn (empty: the current one)
  std::string device = "cpu";
  int repeat = 10, warmup = 2;
  bool quick = false;
  bool tf32 = false;
  std::vector<core::Precision> precisions{core::Precision::fp32};  // --precision, each in turn
  moegrad::perf::FmaPeak fma;  // measured once per run on the CPU (zero on cuda)
};

// The device under test: every clock read waits for it first, so that an interval covers the
// work queued on it (kernels run asynchronously on CUDA; synchronize is a no-op on the CPU).
core::Device g_timed_device = core::Device::cpu();

double now_ms() {
  using namespace std::chrono;
  core::synchronize(g_timed_device);
  return duration<double, std::milli>(steady_clock::now().time_since_epoch()).count();
}

constexpr double kMiB = 1024.0 * 1024.0;

// 1-minute load average (Linux), -1 where unavailable: the machine is shared, so each line
// says how busy it was.
double load1() {
  double l = -1;
  if (std::FILE* f = std::fopen("/proc/loadavg", "r")) {
    if (std::fscanf(f, "%lf", &l) != 1) l = -1;
    std::fclose(f);
  }
  return l;
}

// OMP_WAIT_POLICY as set ("" when unset: libgomp spins, then sleeps).
std::string wait_policy() {
  const char* p = std::getenv("OMP_WAIT_POLICY");
  std::string out;
  for (const char* c = p ? p : ""; *c; ++c)
    if (std::isalnum(static_cast<unsigned char>(*c))) out += *c;  // JSON-safe
  return out;
}

double median(std::vector<double> v) {
  if (v.empty()) return 0.0;
  std::sort(v.begin(), v.end());
  const std::size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

// The routing of one forward, as the layer computes it: the gate's result, the dispatch scale,
// the aux loss and the pipeline (row map; exchange plan) the layer builds from them.
struct Pieces {
  rt::GateResult gate;
  std::optional<rt::Pipeline> pipeline;
  Variable scale, aux;
};

// One MoE layer under test (the one layer interface, moe::MoELayer), with the model-specific
// parts behind functions.
struct Model {
  std::string name;
  std::int64_t k = 0;            // choices per token as routed (lucidrains: always 2)
  std::int64_t h_first = 0;      // columns of the first expert GEMM (st: 2h for GEGLU)
  bool first_transposed = false; // st stores Linear weights [out, in]
  std::shared_ptr<rt::MoELayer> module;
  std::function<Pieces(const Variable&)> route;
  rt::ExpertsFn experts;
  Tensor w_first, w_second;  // expert weights, read by the CPU reference GEMMs

  std::pair<Variable, Variable> forward(const Variable& x) const {  // (out [b, n, d], aux loss)
    rt::MoEOutput r = module->forward(x);
    return {r.output, r.aux_loss};
  }
  const rt::RoutingStats& stats() const { return module->last_routing_stats(); }
};

Model make_model(const std::string& name, const Workload& w, TensorOptions topt, core::Generator* gen) {
  Model m;
  m.name = name;
  if (name == kStMoE) {
    nn::st::MoEOptions o;
    o.gating_top_n = w.k;
    o.expert_hidden_mult = w.st_mult;
    o.capacity_factor_train = 1.25;
    auto layer = std::make_shared<nn::st::MoE>(w.d, w.e, o, topt, gen);
    MOEGRAD_CHECK(layer->experts()->hidden_dim() == w.h, "bench_moe", "st hidden_dim {} != h {}",
                  layer->experts()->hidden_dim(), w.h);
    m.k = w.k;
    m.h_first = 2 * w.h;
    m.first_transposed = true;
    m.module = layer;
    m.route = [layer, o](const Variable& x) {
      Pieces p;
      p.gate = layer->gate()->route(x, false, 1.0, {});
      // as the layer: padded on a GPU, compact on the CPU
      p.pipeline.emplace(p.gate.routing, layer->row_layout(), layer->placement());
      p.scale = rt::dispatch_scale(p.gate.weights, p.gate.straight_through);
      p.aux = ag::add(ag::mul(p.gate.balance_loss, o.balance_loss_coef),
                      ag::mul(p.gate.router_z_loss, o.router_z_loss_coef));
      return p;
    };
    m.experts = [layer](const Variable& rows, const Tensor& off) { return layer->experts()->forward_rows(rows, off); };
    m.w_first = layer->experts()->parameter("w_in").value();
    m.w_second = layer->experts()->parameter("w_out").value();
  } else {
    nn::lmoe::MoEOptions o;
    o.hidden_dim = w.h;
    o.capacity_factor_train = 1.25;
    auto layer = std::make_shared<nn::lmoe::MoE>(w.d, w.e, o, topt, gen);
    m.k = 2;
    m.h_first = w.h;
    m.module = layer;
    m.route = [layer, o](const Variable& x) {
      Pieces p;
      p.gate = layer->gate()->route(x, {}, {});
      // as the layer: padded on a GPU, compact on the CPU
      p.pipeline.emplace(p.gate.routing, layer->row_layout(), layer->placement());
      p.scale = rt::dispatch_scale(p.gate.weights, false);
      p.aux = ag::mul(p.gate.balance_loss, o.loss_coef);
      return p;
    };
    m.experts = [layer](const Variable& rows, const Tensor& off) { return layer->experts()->forward_rows(rows, off); };
    m.w_first = layer->experts()->parameter("w1").value();
    m.w_second = layer->experts()->parameter("w2").value();
  }
  return m;
}

// Useful forward FLOPs of the kept rows: the expert GEMMs only.
double useful_flops(const Model& m, const Workload& w, std::int64_t rows) {
  return 2.0 * static_cast<double>(rows) * static_cast<double>(w.d * m.h_first + w.h * w.d);
}

std::int64_t kept_rows(const rt::RoutingStats& s) {
  return std::accumulate(s.tokens_per_expert.begin(), s.tokens_per_expert.end(), std::int64_t{0});
}

// The same-run GEMM denominator: forward and backward ms of the layer's expert GEMMs for the
// rows the routing kept.
class GemmReference {
 public:
  virtual ~GemmReference() = default;
  // Returns (forward ms, backward ms).
  virtual std::pair<double, double> run(const std::vector<std::int64_t>& per_expert) = 0;
};

// The most expert rows a routing of workload w can keep: every token's k choices.
std::int64_t reference_rows(const Model& m, const Workload& w) { return w.b * w.n * m.k; }

// CPU: the f32 GEMM engine (through core::cpu::gemm_strided, scheduled as the layer's grouped GEMMs)
// on the expert GEMMs of the layer for the given rows per expert: forward
// (x @ W1, act @ W2) and backward (dact, dW2, dx, dW1), with the layer's weight layout.
class CblasReference final : public GemmReference {
 public:
  CblasReference(const Model& m, const Workload& w)
      : m_(m), w_first_(m.w_first.data<float>()), w_second_(m.w_second.data<float>()), d_(w.d), h_(w.h),
        h1_(m.h_first), e_(w.e) {
    dw_.assign(static_cast<std::size_t>(e_ * (d_ * h1_ + h_ * d_)), 0.0f);  // [E, W1] then [E, W2], like the grads
    // Row buffers for every routed choice (tokens * k, the most rows a routing can keep), filled
    // once here: no reallocation later, so compare_cpu subtracts them exactly (reference_rows).
    const std::int64_t rows = reference_rows(m, w);
    fill(x_, rows * d_);
    fill(a1_, rows * h1_);
    fill(act_, rows * h_);
    fill(y_, rows * d_);
  }

  std::pair<double, double> run(const std::vector<std::int64_t>& per_expert) override {
    const std::int64_t rows = std::accumulate(per_expert.begin(), per_expert.end(), std::int64_t{0});
    MOEGRAD_CHECK(rows * d_ <= static_cast<std::int64_t>(x_.size()), "bench_moe", "{} kept rows exceed the {} routed",
                  rows, x_.size() / static_cast<std::size_t>(d_));
    const bool tr = m_.first_transposed;
    constexpr bool N = false, T = true;
    const int d = static_cast<int>(d_), h = static_cast<int>(h_), h1 = static_cast<int>(h1_);
    std::vector<std::int64_t> start(per_expert.size(), 0);  // first row of each expert
    for (std::size_t e = 1; e < start.size(); ++e) start[e] = start[e - 1] + per_expert[e - 1];
    // forward: a1 = x @ W1 (W1 [d, h1] or [h1, d]), y = act @ W2 (W2 [h, d] or [d, h]).
    double t0 = now_ms();
    for_experts(per_expert, d_ * h1_, [&](std::int64_t e, int mm) {
      const std::int64_t r0 = start[static_cast<std::size_t>(e)];
      sgemm(N, tr ? T : N, mm, h1, d, x_.data() + r0 * d_, d, w_first_ + e * d_ * h1_, tr ? d : h1,
            a1_.data() + r0 * h1_, h1);
      sgemm(N, tr ? T : N, mm, d, h, act_.data() + r0 * h_, h, w_second_ + e * h_ * d_, tr ? h : d,
            y_.data() + r0 * d_, d);
    });
    const double fwd = now_ms() - t0;
    // backward, with y as the output gradient and a1 as the first GEMM's output gradient:
    //   dact = gy @ W2^T, dW2 = act^T gy (or gy^T act), dx = ga1 @ W1^T, dW1 = x^T ga1 (or ga1^T x).
    t0 = now_ms();
    for_experts(per_expert, d_ * h1_, [&](std::int64_t e, int mm) {
      const std::int64_t r0 = start[static_cast<std::size_t>(e)];
      const float* gy = y_.data() + r0 * d_;
      const float* ga1 = a1_.data() + r0 * h1_;
      float* dw1 = dw_.data() + e * d_ * h1_;
      float* dw2 = dw_.data() + e_ * d_ * h1_ + e * h_ * d_;
      sgemm(N, tr ? N : T, mm, h, d, gy, d, w_second_ + e * h_ * d_, tr ? h : d, act_.data() + r0 * h_, h);
      if (tr)
        sgemm(T, N, d, h, mm, gy, d, act_.data() + r0 * h_, h, dw2, h);
      else
        sgemm(T, N, h, d, mm, act_.data() + r0 * h_, h, gy, d, dw2, d);
      sgemm(N, tr ? N : T, mm, d, h1, ga1, h1, w_first_ + e * d_ * h1_, tr ? d : h1, x_.data() + r0 * d_, d);
      if (tr)
        sgemm(T, N, h1, d, mm, ga1, h1, x_.data() + r0 * d_, d, dw1, d);
      else
        sgemm(T, N, d, h1, mm, x_.data() + r0 * d_, d, ga1, h1, dw1, h1);
    });
    return {fwd, now_ms() - t0};
  }

 private:
  // body(e, rows) for each expert with rows, scheduled as core's grouped GEMM schedules them
  // (cpu::for_each_gemm_item): side by side, one expert per OpenMP thread (single-threaded BLAS)
  // and largest first, when the experts balance over the threads; else one after another.
  template <class Body>
  static void for_experts(const std::vector<std::int64_t>& per_expert, std::int64_t macs_per_row, Body body) {
    core::GemmGroups items;
    std::vector<std::int64_t> expert;
    for (std::size_t e = 0; e < per_expert.size(); ++e)
      if (per_expert[e] > 0) {
        items.add(per_expert[e], 0, 0, 0);
        expert.push_back(static_cast<std::int64_t>(e));
      }
    core::cpu::for_each_gemm_item(items, macs_per_row, [&](std::int64_t i) {
      body(expert[static_cast<std::size_t>(i)], static_cast<int>(items.size[static_cast<std::size_t>(i)]));
    });
  }

  // C [m, n] = op(A) @ op(B) through moegrad's CPU GEMM (the f32 engine; one product is split
  // over the threads as the layer's GEMMs are, or runs single-threaded inside for_experts).
  static void sgemm(bool ta, bool tb, int m, int n, int k, const float* a, int lda, const float* b, int ldb,
                    float* c, int ldc) {
    const core::RowMajorGemm g{ta, tb, m, n, k, lda, ldb, ldc};
    const std::int64_t at = 0;
    core::cpu::gemm_strided<float>(g, 1.0f, a, b, 0.0f, c, 1, &at, &at, &at);
  }

  static void fill(std::vector<float>& v, std::int64_t n) {
    if (static_cast<std::int64_t>(v.size()) >= n) return;
    std::uint32_t s = 12345;
    v.resize(static_cast<std::size_t>(n));
    for (auto& f : v) {
      s = s * 1664525u + 1013904223u;
      f = static_cast<float>(s >> 8) * (1.0f / 16777216.0f) - 0.5f;
    }
  }
  const Model& m_;
  const float* w_first_;
  const float* w_second_;
  std::int64_t d_, h_, h1_, e_;
  std::vector<float> x_, a1_, act_, y_, dw_;
};

// CUDA (any device with core::matmul): one dense GEMM of the same total size. For the kept rows
// R: forward a1 = x [R, d] @ W1 [d, h1], y = act [R, h] @ W2 [h, d]; backward dact = gy @ W2^T,
// dW2 = act^T gy, dx = ga1 @ W1^T, dW1 = x^T ga1 -- with the layer's weight layout (st stores
// [out, in] and multiplies by the transpose), on device tensors through core::matmul_into
// (cuBLAS; f32, TF32 only with --tf32, like the layer). Inputs and outputs are separate
// buffers, reallocated (outside the timers) when R changes.
class DenseReference final : public GemmReference {
 public:
  DenseReference(const Model& m, const Workload& w, TensorOptions topt)
      : tr_(m.first_transposed), d_(w.d), h_(w.h), h1_(m.h_first), topt_(topt), gen_(4242) {
    w1_ = core::randn(tr_ ? core::Shape{h1_, d_} : core::Shape{d_, h1_}, topt_, &gen_);
    w2_ = core::randn(tr_ ? core::Shape{d_, h_} : core::Shape{h_, d_}, topt_, &gen_);
    dw1_ = core::empty(w1_.shape(), topt_);
    dw2_ = core::empty(w2_.shape(), topt_);
  }

  std::pair<double, double> run(const std::vector<std::int64_t>& per_expert) override {
    const std::int64_t rows = std::accumulate(per_expert.begin(), per_expert.end(), std::int64_t{0});
    if (rows <= 0) return {0.0, 0.0};
    if (rows != rows_) {
      rows_ = rows;
      x_ = core::randn({rows, d_}, topt_, &gen_);
      ga1_ = core::randn({rows, h1_}, topt_, &gen_);
      act_ = core::randn({rows, h_}, topt_, &gen_);
      gy_ = core::randn({rows, d_}, topt_, &gen_);
      a1_ = core::empty({rows, h1_}, topt_);
      y_ = core::empty({rows, d_}, topt_);
      dact_ = core::empty({rows, h_}, topt_);
      dx_ = core::empty({rows, d_}, topt_);
    }
    double t0 = now_ms();
    core::matmul_into(a1_, x_, w1_, false, tr_);
    core::matmul_into(y_, act_, w2_, false, tr_);
    const double fwd = now_ms() - t0;
    t0 = now_ms();
    core::matmul_into(dact_, gy_, w2_, false, !tr_);
    if (tr_)
      core::matmul_into(dw2_, gy_, act_, true, false);  // [d, h]
    else
      core::matmul_into(dw2_, act_, gy_, true, false);  // [h, d]
    core::matmul_into(dx_, ga1_, w1_, false, !tr_);
    if (tr_)
      core::matmul_into(dw1_, ga1_, x_, true, false);  // [h1, d]
    else
      core::matmul_into(dw1_, x_, ga1_, true, false);  // [d, h1]
    return {fwd, now_ms() - t0};
  }

 private:
  bool tr_;
  std::int64_t d_, h_, h1_;
  TensorOptions topt_;
  core::Generator gen_;
  std::int64_t rows_ = -1;
  Tensor w1_, w2_, dw1_, dw2_, x_, ga1_, act_, gy_, a1_, y_, dact_, dx_;
};

struct Sample {
  double fwd_ms, step_ms, fwd_rows, step_rows;
  double route, dispatch, experts, combine;              // forward phases
  double route_b, dispatch_b, experts_b, combine_b;      // their backward
  double exchange, exchange_b;                           // exchange + exchange_back, fwd and bwd
  double gemm_fwd, gemm_bwd, gemm_rows;
  double phase_rows;                                     // rows the phases' routing kept
  double dropped;
  double step_misses;  // caching-allocator misses (fresh memory, first-touch faults) in the step
  double step_peak_bytes, step_base_bytes;  // allocator: peak during the step, allocated before it
};

// One interleaved repeat: layer forward, layer step, the phases, the reference GEMMs.
Sample sample(Model& m, const Workload& w, const Variable& x, const Tensor& g, core::Generator& bench_gen,
              GemmReference& gemm) {
  Sample s{};
  const TensorOptions topt{x.dtype(), x.value().device()};
  {  // forward with the graph recorded; the graph is freed after the timer stops
    const double t0 = now_ms();
    auto [out, aux] = m.forward(x);
    s.fwd_ms = now_ms() - t0;
    s.fwd_rows = static_cast<double>(kept_rows(m.stats()));
  }
  {
    const Variable gv = ag::constant(g);
    const core::Device device = x.value().device();
    core::synchronize(device);
    core::reset_peak_memory(device);
    const core::MemoryStats before = core::memory_stats(device);
    const double t0 = now_ms();
    m.module->zero_grad();
    x.zero_grad();
    auto [out, aux] = m.forward(x);
    Variable loss = ag::add(ag::sum(ag::mul(out, gv)), aux);
    loss.backward();
    s.step_ms = now_ms() - t0;
    const core::MemoryStats after = core::memory_stats(device);
    s.step_misses = static_cast<double>(after.cache_misses - before.cache_misses);
    s.step_base_bytes = static_cast<double>(before.allocated);
    s.step_peak_bytes = static_cast<double>(after.peak_allocated);
    s.step_rows = static_cast<double>(kept_rows(m.stats()));
    s.dropped = m.stats().dropped_fraction;
  }
  m.module->zero_grad();
  x.zero_grad();
  {  // phases: each pipeline step on leaf inputs so its backward can be timed alone
    const std::int64_t T = w.b * w.n;
    double t0 = now_ms();
    Pieces p = m.route(x);
    s.route = now_ms() - t0;
    const rt::Pipeline& pipe = *p.pipeline;
    s.phase_rows = static_cast<double>(pipe.rows().num_rows);
    const Variable scale_leaf(p.scale.value(), p.scale.requires_grad());
    t0 = now_ms();
    Variable buffer = pipe.dispatch(ag::reshape(x, {T, w.d}), scale_leaf);
    s.dispatch = now_ms() - t0;
    Variable buffer_leaf(buffer.value(), true);
    t0 = now_ms();
    Variable local = pipe.exchange(buffer_leaf);
    s.exchange = now_ms() - t0;
    Variable local_leaf(local.value(), true);
    t0 = now_ms();
    Variable expert_out = m.experts(local_leaf, pipe.local_offsets());
    s.experts = now_ms() - t0;
    Variable expert_leaf(expert_out.value(), true);
    t0 = now_ms();
    Variable back = pipe.exchange_back(expert_leaf);
    s.exchange += now_ms() - t0;
    Variable back_leaf(back.value(), true);
    const Variable weight_leaf(p.gate.weights.value(), true);
    t0 = now_ms();
    Variable out = ag::reshape(pipe.combine(back_leaf, weight_leaf), {w.b, w.n, w.d});
    s.combine = now_ms() - t0;

    // Backward in the step's order. Each phase's output gradient is drawn outside the timers,
    // and what a finished phase leaves (its output, the leaf gradients) is dropped at once, so
    // the phases never hold more than the step does (compare_cpu's RSS method counts them).
    // Without expert parallelism the exchanges return their input (a leaf): their backward
    // only hands the gradient over.
    const auto backward_ms = [](Variable& v, const Tensor& grad) {  // then drops v
      const double start = now_ms();
      v.backward(grad);
      const double ms = now_ms() - start;
      v = Variable();
      return ms;
    };
    s.combine_b = backward_ms(out, g);
    back_leaf = Variable();
    s.exchange_b = backward_ms(back, core::randn(back.shape(), topt, &bench_gen));
    expert_leaf = Variable();
    s.experts_b = backward_ms(expert_out, core::randn(expert_out.shape(), topt, &bench_gen));
    local_leaf = Variable();
    s.exchange_b += backward_ms(local, core::randn(local.shape(), topt, &bench_gen));
    buffer_leaf = Variable();
    s.dispatch_b = backward_ms(buffer, core::randn(buffer.shape(), topt, &bench_gen));
    const Tensor g_w = core::randn(p.gate.weights.shape(), topt, &bench_gen);
    const Tensor g_s = core::randn(p.scale.shape(), topt, &bench_gen);
    // The gate's graph receives the weights' gradient (combine) and, straight-through, the
    // scale's (dispatch), plus the aux loss.
    Variable loss = ag::add(ag::sum(ag::mul(p.gate.weights, ag::constant(g_w))), p.aux);
    if (p.scale.requires_grad()) loss = ag::add(loss, ag::sum(ag::mul(p.scale, ag::constant(g_s))));
    t0 = now_ms();
    loss.backward();
    s.route_b = now_ms() - t0;
  }
  m.module->zero_grad();
  x.zero_grad();
  {
    const auto& per_expert = m.stats().tokens_per_expert;
    s.gemm_rows = static_cast<double>(kept_rows(m.stats()));
    std::tie(s.gemm_fwd, s.gemm_bwd) = gemm.run(per_expert);
  }
  return s;
}

// Returns the step's median time and peak growth (MiB), for the same-run precision comparison.
std::pair<double, double> bench(const Config& cfg, const Workload& w, const std::string& model_name, core::Device device,
                                core::Precision precision) {
  // The layer's GEMMs (forward and backward) at `precision`; the cpu denominator stays the f32 sgemm
  // (the cuda one, core::matmul, runs at `precision` too).
  const core::GemmPrecisionScope precision_scope(precision);
  const TensorOptions topt{core::DType::f32, device};
  g_timed_device = device;
  core::Generator gen(1234), data_gen(99), bench_gen(7);
  Model m = make_model(model_name, w, topt, &gen);
  m.module->train();
  const Variable x(core::randn({w.b, w.n, w.d}, topt, &data_gen), /*requires_grad=*/true);
  const Tensor g = core::randn({w.b, w.n, w.d}, topt, &data_gen);
  // The per-expert cblas reference reads the weights through host pointers: CPU only.
  std::unique_ptr<GemmReference> ref;
  if (device.is_cpu())
    ref = std::make_unique<CblasReference>(m, w);
  else
    ref = std::make_unique<DenseReference>(m, w, topt);
  GemmReference& gemm = *ref;
  const char* gemm_ref = device.is_cpu() ? "cblas_per_expert" : "cublas_dense";

  const int repeat = cfg.quick ? 1 : cfg.repeat, warmup = cfg.quick ? 1 : cfg.warmup;
  const double load_before = load1();
  fmt::print(stderr, "bench_moe: {} {} on {}{}, {} (d{} h{} e{} k{}, {}x{} tokens): {} warm-up + {} repeats\n", w.name,
             model_name, device.str(), device.is_cpu() ? fmt::format(", {} GEMMs", core::cpu::gemm_engine().name()) : "",
             core::precision_name(precision), w.d, w.h, w.e, m.k, w.b, w.n, warmup, repeat);
  for (int i = 0; i < warmup; ++i) sample(m, w, x, g, bench_gen, gemm);
  std::vector<Sample> ss;
  for (int i = 0; i < repeat; ++i) ss.push_back(sample(m, w, x, g, bench_gen, gemm));

  auto med = [&](auto field) {
    std::vector<double> v;
    for (const Sample& s : ss) v.push_back(field(s));
    return median(v);
  };
  const double fwd_ms = med([](const Sample& s) { return s.fwd_ms; });
  const double step_ms = med([](const Sample& s) { return s.step_ms; });
  const double rows = med([](const Sample& s) { return s.fwd_rows; });
  const double fwd_gflops = med([&](const Sample& s) { return useful_flops(m, w, std::llround(s.fwd_rows)) / s.fwd_ms * 1e-6; });
  const double gflops = med([&](const Sample& s) { return 3 * useful_flops(m, w, std::llround(s.step_rows)) / s.step_ms * 1e-6; });
  const double gemm_gflops = med([&](const Sample& s) { return useful_flops(m, w, std::llround(s.gemm_rows)) / s.gemm_fwd * 1e-6; });
  const double gemm_step_gflops =
      med([&](const Sample& s) { return 3 * useful_flops(m, w, std::llround(s.gemm_rows)) / (s.gemm_fwd + s.gemm_bwd) * 1e-6; });
  const double gemm_fwd_ms = med([](const Sample& s) { return s.gemm_fwd; });
  const double gemm_step_ms = med([](const Sample& s) { return s.gemm_fwd + s.gemm_bwd; });
  const double route = med([](const Sample& s) { return s.route; });
  const double dispatch = med([](const Sample& s) { return s.dispatch; });
  const double experts = med([](const Sample& s) { return s.experts; });
  const double combine = med([](const Sample& s) { return s.combine; });
  const double route_b = med([](const Sample& s) { return s.route_b; });
  const double dispatch_b = med([](const Sample& s) { return s.dispatch_b; });
  const double experts_b = med([](const Sample& s) { return s.experts_b; });
  const double combine_b = med([](const Sample& s) { return s.combine_b; });
  const double exchange = med([](const Sample& s) { return s.exchange; });
  const double exchange_b = med([](const Sample& s) { return s.exchange_b; });
  const double rdc_share = med([](const Sample& s) {
    return (s.route + s.dispatch + s.combine) / (s.route + s.dispatch + s.experts + s.combine);
  });
  const double rdc_step_share = med([](const Sample& s) {
    const double rdc = s.route + s.dispatch + s.combine + s.route_b + s.dispatch_b + s.combine_b;
    return rdc / (rdc + s.experts + s.experts_b);
  });
  const double dropped = med([](const Sample& s) { return s.dropped; });
  const double step_misses = med([](const Sample& s) { return s.step_misses; });
  // The experts' phase alone (both GEMMs and the activation) at the useful FLOPs of its rows.
  const double experts_gflops =
      med([&](const Sample& s) { return useful_flops(m, w, std::llround(s.phase_rows)) / s.experts * 1e-6; });
  const double experts_step_gflops = med([&](const Sample& s) {
    return 3 * useful_flops(m, w, std::llround(s.phase_rows)) / (s.experts + s.experts_b) * 1e-6;
  });
  double step_peak_mb = 0, peak_allocated_mb = 0, step_base_mb = 0;
  for (const Sample& s : ss) {
    step_peak_mb = std::max(step_peak_mb, (s.step_peak_bytes - s.step_base_bytes) / kMiB);
    peak_allocated_mb = std::max(peak_allocated_mb, s.step_peak_bytes / kMiB);
    step_base_mb = std::max(step_base_mb, s.step_base_bytes / kMiB);
  }

  fmt::print(
      "{{\"bench\":\"moe\",\"workload\":\"{}\",\"model\":\"{}\",\"device\":\"{}\",\"dtype\":\"f32\",\"quick\":{},"
      "\"d\":{},\"h\":{},\"e\":{},\"k\":{},\"tokens\":{},\"rows\":{:.0f},\"dropped\":{:.3f},\"omp_threads\":{},"
      "\"repeat\":{},\"fwd_ms\":{:.3f},\"step_ms\":{:.3f},\"fwd_gflops\":{:.2f},\"gflops\":{:.2f},"
      "\"gemm_fwd_ms\":{:.3f},\"gemm_step_ms\":{:.3f},\"gemm_gflops\":{:.2f},\"gemm_step_gflops\":{:.2f},"
      "\"ratio_fwd\":{:.3f},\"ratio\":{:.3f},"
      "\"route_ms\":{:.3f},\"dispatch_ms\":{:.3f},\"experts_ms\":{:.3f},\"combine_ms\":{:.3f},\"rdc_share\":{:.4f},"
      "\"route_bwd_ms\":{:.3f},\"dispatch_bwd_ms\":{:.3f},\"experts_bwd_ms\":{:.3f},\"combine_bwd_ms\":{:.3f},"
      "\"rdc_step_share\":{:.4f},\"step_alloc_misses\":{:.0f},\"omp_wait_policy\":\"{}\",\"load1\":[{:.2f},{:.2f}],"
      "\"b\":{},\"n\":{},\"tf32\":{},\"gemm_ref\":\"{}\",\"fwd_tflops\":{:.4f},\"tflops\":{:.4f},"
      "\"gemm_tflops\":{:.4f},\"gemm_step_tflops\":{:.4f},\"experts_gflops\":{:.2f},\"experts_step_gflops\":{:.2f},"
      "\"experts_ratio_fwd\":{:.3f},\"experts_ratio\":{:.3f},\"step_peak_mb\":{:.1f},\"peak_allocated_mb\":{:.1f},"
      "\"step_base_mb\":{:.1f},\"fma_peak_gflops\":{:.1f},\"fma_isa\":\"{}\",\"peak_fraction\":{:.3f},"
      "\"reference_rows\":{},\"exchange_ms\":{:.3f},\"exchange_bwd_ms\":{:.3f},\"gemm_engine\":\"{}\","
      "\"precision\":\"{}\"}}\n",
      w.name, model_name, device.str(), cfg.quick, w.d, w.h, w.e, m.k, w.b * w.n, rows, dropped, omp_get_max_threads(),
      repeat, fwd_ms, step_ms, fwd_gflops, gflops, gemm_fwd_ms, gemm_step_ms, gemm_gflops, gemm_step_gflops,
      fwd_gflops / gemm_gflops, gflops / gemm_step_gflops, route, dispatch, experts, combine, rdc_share, route_b,
      dispatch_b, experts_b, combine_b, rdc_step_share, step_misses, wait_policy(), load_before, load1(), w.b, w.n,
      cfg.tf32, gemm_ref, fwd_gflops * 1e-3, gflops * 1e-3, gemm_gflops * 1e-3, gemm_step_gflops * 1e-3,
      experts_gflops, experts_step_gflops, experts_gflops / gemm_gflops, experts_step_gflops / gemm_step_gflops,
      step_peak_mb, peak_allocated_mb, step_base_mb, cfg.fma.gflops, cfg.fma.isa,
      cfg.fma.gflops > 0 ? gflops / cfg.fma.gflops : 0.0, device.is_cpu() ? reference_rows(m, w) : 0, exchange,
      exchange_b, device.is_cpu() ? core::cpu::gemm_engine().name() : "cublas", core::precision_name(precision));
  std::fflush(stdout);
  fmt::print(stderr,
             "  fwd {:.2f} ms ({:.1f} GFLOP/s, {:.2f} of GEMM {:.1f}), step {:.2f} ms ({:.1f} GFLOP/s, {:.2f} of GEMM "
             "{:.1f}), experts {:.2f} / {:.2f} of GEMM, rdc share fwd {:.1f}% step {:.1f}%, step peak +{:.1f} MiB\n",
             fwd_ms, fwd_gflops, fwd_gflops / gemm_gflops, gemm_gflops, step_ms, gflops, gflops / gemm_step_gflops,
             gemm_step_gflops, experts_gflops / gemm_gflops, experts_step_gflops / gemm_step_gflops, 100 * rdc_share,
             100 * rdc_step_share, step_peak_mb);
  return {step_ms, step_peak_mb};
}

// Runs every --precision on one (workload, model) and, with several, prints each one's step time
// and peak over the first's (the same-run comparison: fp32,bf16 gives bf16's speed-up).
void bench_precisions(const Config& cfg, const Workload& w, const std::string& model, core::Device device) {
  std::vector<std::pair<double, double>> runs;
  for (core::Precision p : cfg.precisions) runs.push_back(bench(cfg, w, model, device, p));
  for (std::size_t i = 1; i < runs.size(); ++i)
    fmt::print(stderr, "bench_moe: {} {} {} vs {}: step {:.2f} / {:.2f} ms (speed-up {:.2f}x), step peak +{:.1f} / +{:.1f} MiB\n",
               w.name, model, core::precision_name(cfg.precisions[i]), core::precision_name(cfg.precisions[0]),
               runs[i].first, runs[0].first, runs[0].first / runs[i].first, runs[i].second, runs[0].second);
}

int run_bench(Config cfg) {
  const core::BuildInfo info = core::build_info();
  core::Device device = core::Device::cpu();
  if (cfg.device == "cuda") {
    device = core::Device::cuda(0);
    if (const std::string why = core::device_unavailable(device); !why.empty()) {
      throw moegrad::cli::UsageError(fmt::format("--device cuda but {}", why));
    }
  }
  if (cfg.tf32) core::set_allow_tf32(true);
  fmt::print(stderr, "bench_moe: moegrad {}, {} OpenMP threads, BLAS {}, device {}{}\n", info.version, info.omp_threads,
             info.blas, device.str(), device.is_cuda() ? (cfg.tf32 ? ", TF32 on" : ", TF32 off") : "");
  if (!device.is_cuda()) {
    cfg.fma = moegrad::perf::measure_fma_peak();
    fmt::print(stderr, "bench_moe: measured f32 FMA peak {:.1f} GFLOP/s ({}, {} threads)\n", cfg.fma.gflops, cfg.fma.isa,
               cfg.fma.threads);
  }

  for (const Workload& w : workloads(cfg.quick, device.is_cuda())) {
    if (cfg.workload && *cfg.workload != w.name) continue;
    for (const char* model : {kLucidrains, kStMoE}) {
      if (cfg.model && *cfg.model != model) continue;
      try {
        if (cfg.gemm.empty() || device.is_cuda()) bench_precisions(cfg, w, model, device);
        for (const std::string& engine : device.is_cuda() ? std::vector<std::string>{} : cfg.gemm) {
          core::cpu::set_gemm_engine(engine);
          bench_precisions(cfg, w, model, device);
        }
        // The next (workload, model) starts from an empty device cache: its peak and its first
        // allocations do not depend on what ran before. (The CPU cache is left as it was.)
        if (device.is_cuda()) core::empty_cache(device);
      } catch (const std::exception& e) {
        fmt::print(stderr, "bench_moe: {} {} on {}: {}\n", w.name, model, device.str(), e.what());
        return 1;
      }
    }
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"MoE layers' forward and forward+backward on the fast path, one JSON line per measurement.",
               "bench_moe"};
  app.footer("Train mode, f32 parameters (--precision: the GEMMs'), capacity factor 1.25. On cuda every timer waits for the device (core::synchronize).\n"
      "JSON keys: bench, workload, model, device, dtype, precision, quick, d, h, e, k, b, n, tokens, rows (kept),\n"
      "dropped (routed choices dropped by capacity), repeat, tf32, fwd_ms, step_ms, fwd_gflops, gflops\n"
      "(step), fwd_tflops, tflops; gemm_ref (cpu: cblas_per_expert = the GEMM engine's sgemm on the same\n"
      "per-expert GEMMs, threaded and scheduled as the layer's grouped GEMMs are; cuda:\n"
      "cublas_dense = one dense GEMM of the same total size, [R, d] @ [d, h1] and [R, h] @ [h, d] plus\n"
      "their backward, through core::matmul), gemm_fwd_ms, gemm_step_ms, gemm_gflops,\n"
      "gemm_step_gflops, gemm_tflops, gemm_step_tflops, ratio_fwd, ratio (layer rate / GEMM rate);\n"
      "experts_gflops, experts_step_gflops, experts_ratio_fwd, experts_ratio (the experts' phase alone over\n"
      "the same GEMM rates); route/dispatch/experts/combine_ms (+ _bwd_ms), rdc_share, rdc_step_share;\n"
      "step_peak_mb (the step's peak allocator growth over what was allocated before it, MiB),\n"
      "peak_allocated_mb, step_base_mb, step_alloc_misses; omp_threads, omp_wait_policy, load1;\n"
      "fma_peak_gflops, fma_isa (cpu: the measured f32 FMA peak of all threads, bench/fma_peak.h; 0 on cuda),\n"
      "peak_fraction (step GFLOP/s on useful FLOPs / fma_peak_gflops); gemm_engine (cpu: the f32 GEMM engine of\n"
      "the layer and the denominator; cuda: cublas); reference_rows (cpu: the rows\n"
      "the GEMM reference's buffers hold, tokens * k, allocated once; 0 on cuda); exchange_ms,\n"
      "exchange_bwd_ms (the pipeline's exchange + exchange_back: the identity in one process).\n"
      "On a 2-core machine with the pthread OpenBLAS, set OMP_WAIT_POLICY=passive (docs/benchmarks.md).");
  Config cfg;
  std::string workload, model, gemm;
  std::int64_t repeat = cfg.repeat;
  auto* workload_opt =
      app.add_option("--workload", workload,
                     "W1 d256 h1024 e8 k2; W2 d1024 h4096 e8 k2; W3 d1024 h512 e64 k8 (default: all); tokens on "
                     "cpu: W1 8x256, W2 4x256, W3 8x256; on cuda: 8x2048 each")
          ->check(CLI::IsMember({"W1", "W2", "W3"}))
          ->type_name("W1|W2|W3");
  auto* model_opt = app.add_option("--model", model,
                                   "st_moe.MoE (top-k = the workload's k) or lucidrains.MoE (always top-2: W3 runs "
                                   "with k = 2 and reports k 2) (default: both)")
                        ->check(CLI::IsMember({kStMoE, kLucidrains}))
                        ->type_name("NAME");
  app.add_option("--device", cfg.device,
                 "cpu or cuda (default cpu; cuda = cuda:0, needs a CUDA build and a visible device)")
      ->check(CLI::IsMember({"cpu", "cuda"}));
  cli::add_integer(app, "--repeat", repeat, 1, std::numeric_limits<int>::max(),
                   "measured repeats after 2 warm-ups, medians reported");
  app.add_flag("--quick", cfg.quick,
               "tiny shapes (both devices), 1 warm-up + 1 repeat (smoke test; figures not meaningful)")
      ->disable_flag_override();
  auto* gemm_opt = app.add_option("--gemm", gemm,
                                  "cpu: the f32 GEMM engines to run, comma-separated (openblas, onednn, onednn_small_k, auto; "
                                  "core/cpu/gemm_engine.h), each in turn on every (workload, model), layer and GEMM "
                                  "denominator alike (default: the one MOEGRAD_GEMM or the CPU selects)")
                       ->type_name("LIST");
  std::string precisions;
  auto* precision_opt =
      app.add_option("--precision", precisions,
                     "the layers' GEMM precisions to run, comma-separated, each in turn on every (workload, model): "
                     "fp32, bf16 (bf16 operands, FP32 accumulation; core/precision.h); with several, the step time "
                     "and peak of each over the first's (default fp32)")
          ->type_name("LIST");
  app.add_flag("--tf32", cfg.tf32,
               "let cuBLAS use TF32 tensor cores for f32 GEMMs (core::set_allow_tf32), in the layers and the GEMM "
               "denominator alike (default off: FP32; no effect on cpu)")
      ->disable_flag_override();
  return cli::run(app, argc, argv, [&] {
    if (workload_opt->count() > 0) cfg.workload = workload;
    if (model_opt->count() > 0) cfg.model = model;
    cfg.repeat = static_cast<int>(repeat);
    if (precision_opt->count() > 0) {
      cfg.precisions.clear();
      for (const std::string& name : cli::split_commas(precisions)) {
        if (name != "fp32" && name != "bf16")
          throw cli::UsageError(fmt::format("--precision takes fp32 and/or bf16, comma-separated, got '{}'", name));
        cfg.precisions.push_back(core::parse_precision(name, "--precision"));
      }
    }
    if (gemm_opt->count() > 0) {
      if (gemm.empty()) throw cli::UsageError("--gemm takes a comma-separated list of GEMM engines");
      for (const std::string& name : cli::split_commas(gemm)) {
        try {
          core::cpu::set_gemm_engine(name);  // checks the name
        } catch (const std::exception& e) {
          throw cli::UsageError(fmt::format("--gemm: {}", e.what()));
        }
        cfg.gemm.push_back(name);
      }
    }
    return run_bench(cfg);
  });
}
