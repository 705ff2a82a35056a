// Core op throughput against same-run denominators, one JSON line per measurement:
//   matmul      GFLOP/s through core::matmul vs a direct cblas_sgemm of the same shape;
//   elementwise / reductions  GB/s through core ops vs memcpy of the same traffic;
//   fused       forward + backward of a fused autograd op vs the unfused graph it replaced.
// Traffic counts bytes read plus bytes written (memcpy of S bytes = 2 S). Timings are medians
// of several samples after warm-up; core and the denominator are sampled alternately.
#include <cblas.h>
#include <fmt/format.h>
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <cmath>
#include <functional>
#include <limits>
#include <string>
#include <vector>

#include "autograd/autograd.h"
#include "core/ops.h"
#include "tools/cli.h"

using namespace moegrad;
using namespace moegrad::core;

namespace {

struct Config {
  bool quick = false;
  int samples = 9;
  double sample_ms = 40;  // each sample repeats the call until about this long
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

// Median ms per call of f and g, sampled alternately after a warm-up.
std::pair<double, double> time_pair(const Config& cfg, const std::function<void()>& f,
                                    const std::function<void()>& g) {
  f();
  g();
  double t0 = now_ms();
  f();
  const double once = std::max(1e-3, now_ms() - t0);
  const int iters = std::max(1, static_cast<int>(cfg.sample_ms / once));
  std::vector<double> tf, tg;
  for (int s = 0; s < cfg.samples; ++s) {
    t0 = now_ms();
    for (int i = 0; i < iters; ++i) f();
    tf.push_back((now_ms() - t0) / iters);
    t0 = now_ms();
    for (int i = 0; i < iters; ++i) g();
    tg.push_back((now_ms() - t0) / iters);
  }
  return {median(tf), median(tg)};
}

void bench_matmul(const Config& cfg, std::int64_t batch, std::int64_t m, std::int64_t k,
                  std::int64_t n) {
  Generator gen(1);
  const Shape sa = batch > 1 ? Shape{batch, m, k} : Shape{m, k};
  const Shape sb = batch > 1 ? Shape{batch, k, n} : Shape{k, n};
  const Tensor a = rand(sa, {}, &gen), b = rand(sb, {}, &gen);
  const Tensor c = zeros(batch > 1 ? Shape{batch, m, n} : Shape{m, n});
  const float* pa = a.data<float>();
  const float* pb = b.data<float>();
  float* pc = c.data<float>();
  auto core_call = [&] { Tensor y = matmul(a, b); };
  auto blas_call = [&] {
    for (std::int64_t i = 0; i < batch; ++i)
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, static_cast<int>(m),
                  static_cast<int>(n), static_cast<int>(k), 1.0f, pa + i * m * k,
                  static_cast<int>(k), pb + i * k * n, static_cast<int>(n), 0.0f,
                  pc + i * m * n, static_cast<int>(n));
  };
  const auto [ms, blas_ms] = time_pair(cfg, core_call, blas_call);
  const double flop = 2.0 * static_cast<double>(batch * m * n * k);
  const std::string shape = batch > 1 ? fmt::format("{}x[{}x{}]@[{}x{}]", batch, m, k, k, n)
                                      : fmt::format("[{}x{}]@[{}x{}]", m, k, k, n);
  fmt::print(
      "{{\"bench\":\"matmul\",\"device\":\"cpu\",\"dtype\":\"f32\",\"shape\":\"{}\",\"ms\":{:.4f},"
      "\"gflops\":{:.2f},\"blas_ms\":{:.4f},\"blas_gflops\":{:.2f},\"ratio\":{:.3f}}}\n",
      shape, ms, flop / ms * 1e-6, blas_ms, flop / blas_ms * 1e-6, blas_ms / ms);
  std::fflush(stdout);
}

// GB/s of `op` moving `traffic` bytes vs memcpy moving the same traffic (S = traffic / 2).
void bench_bandwidth(const Config& cfg, const std::string& op, const std::string& shape,
                     double traffic, const std::function<void()>& f) {
  const std::size_t bytes = static_cast<std::size_t>(traffic / 2);
  std::vector<char> src(bytes, 1), dst(bytes, 0);
  auto copy = [&] { std::memcpy(dst.data(), src.data(), bytes); };
  const auto [ms, copy_ms] = time_pair(cfg, f, copy);
  const double gbps = traffic / ms * 1e-6, memcpy_gbps = traffic / copy_ms * 1e-6;
  fmt::print(
      "{{\"bench\":\"bandwidth\",\"device\":\"cpu\",\"dtype\":\"f32\",\"op\":\"{}\",\"shape\":\"{}\","
      "\"ms\":{:.4f},\"gbps\":{:.2f},\"memcpy_ms\":{:.4f},\"memcpy_gbps\":{:.2f},\"ratio\":{:.3f}}}\n",
      op, shape, ms, gbps, copy_ms, memcpy_gbps, gbps / memcpy_gbps);
  std::fflush(stdout);
}

void bench_elementwise(const Config& cfg) {
  const std::int64_t rows = cfg.quick ? 512 : 4096, cols = 4096;  // 2M or 16M f32
  const double n = static_cast<double>(rows * cols), f = sizeof(float);
  const std::string shape = fmt::format("[{}x{}]", rows, cols);
  Generator gen(2);
  const Tensor x = rand({rows, cols}, {}, &gen), y = rand({rows, cols}, {}, &gen);
  bench_bandwidth(cfg, "add", shape, 3 * n * f, [&] { Tensor z = add(x, y); });
  bench_bandwidth(cfg, "mul", shape, 3 * n * f, [&] { Tensor z = mul(x, y); });
  bench_bandwidth(cfg, "exp", shape, 2 * n * f, [&] { Tensor z = exp(x); });
  // Same traffic as memcpy into a fresh output: shows what allocating the output costs.
  bench_bandwidth(cfg, "clone", shape, 2 * n * f, [&] { Tensor z = clone(x); });
  const Tensor acc = zeros({rows, cols});
  bench_bandwidth(cfg, "add_ (in place)", shape, 3 * n * f, [&] { add_(acc, x); });
  bench_bandwidth(cfg, "sum(dim=-1)", shape, (n + rows) * f, [&] { Tensor z = sum(x, {1}); });
  bench_bandwidth(cfg, "sum(dim=0)", shape, (n + cols) * f, [&] { Tensor z = sum(x, {0}); });
}

// Operands broadcast along the last dim (a per-row scale expanded over [rows, H]), as the MoE
// experts' GEGLU with its gate weight and softmax's normalisation meet them: the rows of the
// expert MLP, H = 128 as in the README's language model.
void bench_row_broadcast(const Config& cfg) {
  const std::int64_t rows = cfg.quick ? 2048 : 16384, H = 128;
  const double n = static_cast<double>(rows * H), f = sizeof(float);
  const std::string shape = fmt::format("[{}x{}] and [{}x1]", rows, H, rows);
  Generator gen(3);
  const Tensor x = rand({rows, H}, {}, &gen), s = rand({rows, 1}, {}, &gen), h = rand({rows, 2 * H}, {}, &gen);
  const Tensor gy = rand({rows, H}, {}, &gen), dh = empty({rows, 2 * H}), dmult = empty({rows, H});
  bench_bandwidth(cfg, "mul (row broadcast)", shape, 2 * n * f, [&] { Tensor z = mul(x, s); });
  bench_bandwidth(cfg, "div (row broadcast)", shape, 2 * n * f, [&] { Tensor z = div(x, s); });
  bench_bandwidth(cfg, "geglu (row mult)", shape, 3 * n * f, [&] { Tensor z = geglu(h, s); });
  bench_bandwidth(cfg, "geglu_backward (row mult)", shape, 7 * n * f,
                  [&] { geglu_backward(gy, h, s, true, true, dh, dmult); });
}

// Forward + backward (sum(w * y), w fixed) through a fused op and through the unfused autograd
// graph it replaced, at the shapes of the README's language model (1024 tokens of width 64; q and
// k [16, 4, 64, 16] as heads permuted from [16, 64, 4, 16]): ms per call and unfused / fused.
void bench_fused(const Config& cfg) {
  const auto report = [&](const std::string& op, const std::string& shape, const std::function<void()>& fused,
                          const std::function<void()>& unfused) {
    const auto [ms, unfused_ms] = time_pair(cfg, fused, unfused);
    fmt::print(
        "{{\"bench\":\"fused\",\"device\":\"cpu\",\"dtype\":\"f32\",\"op\":\"{}\",\"shape\":\"{}\","
        "\"ms\":{:.4f},\"unfused_ms\":{:.4f},\"speedup\":{:.2f}}}\n",
        op, shape, ms, unfused_ms, unfused_ms / ms);
    std::fflush(stdout);
  };
  Generator gen(4);
  const auto run = [](const ag::Variable& y, const Tensor& w) { ag::sum(ag::mul(y, ag::constant(w))).backward(); };
  {
    const Tensor x0 = randn({16, 64, 64}, {}, &gen), w = randn({16, 64, 64}, {}, &gen);
    const ag::Variable x(x0, true), g(ones({64}), true);
    const double scale = 8.0, eps = 1e-12;
    report("rms_norm fwd+bwd", "[16x64x64], gamma [64]", [&] { run(ag::rms_norm(x, g, scale, eps), w); }, [&] {
      const ag::Variable n = ag::clamp(ag::norm(x, 2.0, {-1}, true), eps, std::numeric_limits<double>::infinity());
      run(ag::mul(ag::mul(ag::div(x, n), g), scale), w);
    });
  }
  {
    const std::int64_t B = 16, T = 64, H = 4, D = 16;
    const Tensor angle = mul(rand({T, D / 2}, {}, &gen), 6.0);
    std::vector<double> c, s;
    for (const double a : angle.to_vector<double>()) c.push_back(std::cos(a)), s.push_back(std::sin(a));
    const Tensor cos = to_dtype(from_vector<double>(c, {T, D / 2}), DType::f32);
    const Tensor sin = to_dtype(from_vector<double>(s, {T, D / 2}), DType::f32);
    const ag::Variable x(randn({B, T, H, D}, {}, &gen), true);
    const Tensor w = randn({B, H, T, D}, {}, &gen);
    report("rotary fwd+bwd", "[16x64x4x16] permuted to [16x4x64x16]",
           [&] { run(ag::rotary(ag::permute(x, {0, 2, 1, 3}), cos, sin), w); }, [&] {
             const ag::Variable p = ag::permute(x, {0, 2, 1, 3});
             const ag::Variable x1 = ag::narrow(p, -1, 0, D / 2), x2 = ag::narrow(p, -1, D / 2, D / 2);
             const ag::Variable cv = ag::constant(cos), sv = ag::constant(sin);
             run(ag::cat({ag::sub(ag::mul(x1, cv), ag::mul(x2, sv)), ag::add(ag::mul(x1, sv), ag::mul(x2, cv))}, -1), w);
           });
  }
}

int run_all(Config cfg) {
  if (cfg.quick) {
    cfg.samples = 5;
    cfg.sample_ms = 10;
  }
  fmt::print("{{\"bench\":\"info\",\"device\":\"cpu\",\"omp_threads\":{},\"quick\":{}}}\n",
             omp_get_max_threads(), cfg.quick);
  if (cfg.quick) {
    bench_matmul(cfg, 1, 256, 256, 256);
    bench_matmul(cfg, 2, 128, 128, 256);
  } else {
    for (std::int64_t s : {256, 512, 1024}) bench_matmul(cfg, 1, s, s, s);
    bench_matmul(cfg, 1, 2048, 256, 1024);
    bench_matmul(cfg, 1, 2048, 1024, 256);
    bench_matmul(cfg, 8, 256, 256, 1024);
  }
  bench_elementwise(cfg);
  bench_row_broadcast(cfg);
  bench_fused(cfg);
  return 0;  // an exception ends the run with exit 1 (cli::run)
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Core op throughput vs direct BLAS and memcpy, one JSON line per measurement.", "bench_ops"};
  Config cfg;
  app.add_flag("--quick", cfg.quick, "small sizes and few samples (CI smoke test)")
      ->disable_flag_override();
  return moegrad::cli::run(app, argc, argv, [&] { return run_all(cfg); });
}
