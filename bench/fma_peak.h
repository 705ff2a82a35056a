// The measured f32 FMA peak of this CPU, the denominator of issue 6's "whole step >= 50% of
// the FMA peak" figure: every OpenMP thread runs independent chains of fused multiply-adds on
// registers (no memory traffic) with the widest vector ISA the CPU reports (AVX-512, else
// AVX2 + FMA, else scalar fmaf), and the rate is all threads' FLOPs over the wall time, best of
// 10 runs of about 20 ms. Header-only: bench/*.cpp are one program each.
#pragma once
#include <immintrin.h>
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>

namespace moegrad::perf {

struct FmaPeak {
  double gflops = 0;
  const char* isa = "";
  int threads = 0;
};

namespace fma_detail {

// Enough independent accumulators to cover the FMA latency (4-5 cycles) times the FMA ports (2).
constexpr int kChains = 12;

__attribute__((target("avx512f"))) inline float run_avx512(std::int64_t iters) {
  __m512 acc[kChains];
  for (int i = 0; i < kChains; ++i) acc[i] = _mm512_set1_ps(1.0f + 1e-3f * static_cast<float>(i));
  const __m512 a = _mm512_set1_ps(0.999999f), b = _mm512_set1_ps(1e-7f);
  for (std::int64_t it = 0; it < iters; ++it)
#pragma GCC unroll 12
    for (int i = 0; i < kChains; ++i) acc[i] = _mm512_fmadd_ps(acc[i], a, b);
  __m512 s = acc[0];
  for (int i = 1; i < kChains; ++i) s = _mm512_add_ps(s, acc[i]);
  alignas(64) float out[16];
  _mm512_store_ps(out, s);
  float t = 0;
  for (float v : out) t += v;
  return t;
}

__attribute__((target("avx2,fma"))) inline float run_avx2(std::int64_t iters) {
  __m256 acc[kChains];
  for (int i = 0; i < kChains; ++i) acc[i] = _mm256_set1_ps(1.0f + 1e-3f * static_cast<float>(i));
  const __m256 a = _mm256_set1_ps(0.999999f), b = _mm256_set1_ps(1e-7f);
  for (std::int64_t it = 0; it < iters; ++it)
#pragma GCC unroll 12
    for (int i = 0; i < kChains; ++i) acc[i] = _mm256_fmadd_ps(acc[i], a, b);
  alignas(32) float out[8];
  __m256 s = acc[0];
  for (int i = 1; i < kChains; ++i) s = _mm256_add_ps(s, acc[i]);
  _mm256_store_ps(out, s);
  float t = 0;
  for (float v : out) t += v;
  return t;
}

inline float run_scalar(std::int64_t iters) {
  float acc[kChains];
  for (int i = 0; i < kChains; ++i) acc[i] = 1.0f + 1e-3f * static_cast<float>(i);
  for (std::int64_t it = 0; it < iters; ++it)
    for (int i = 0; i < kChains; ++i) acc[i] = std::fma(acc[i], 0.999999f, 1e-7f);
  float t = 0;
  for (float v : acc) t += v;
  return t;
}

}  // namespace fma_detail

inline FmaPeak measure_fma_peak() {
  FmaPeak p;
  int lanes = 1;
  float (*run)(std::int64_t) = fma_detail::run_scalar;
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f")) {
    run = fma_detail::run_avx512;
    lanes = 16;
    p.isa = "avx512f";
  } else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
    run = fma_detail::run_avx2;
    lanes = 8;
    p.isa = "avx2+fma";
  } else {
    p.isa = "scalar";
  }
  p.threads = omp_get_max_threads();
  const std::int64_t iters = 20'000'000 / lanes;  // about 20 ms per thread at a few GHz
  volatile float sink = 0;
  for (int rep = 0; rep < 10; ++rep) {
    const auto t0 = std::chrono::steady_clock::now();
#pragma omp parallel num_threads(p.threads)
    {
      const float r = run(iters);
      if (r == 12345.0f) sink = r;  // keeps the chains alive
    }
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const double flops = 2.0 * fma_detail::kChains * lanes * static_cast<double>(iters) * p.threads;
    p.gflops = std::max(p.gflops, flops / s * 1e-9);
  }
  (void)sink;
  return p;
}

}  // namespace moegrad::perf
