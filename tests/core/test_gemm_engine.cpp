// Every f32 GEMM engine this build has (core/cpu/gemm_engine.h) through moegrad's entry points
// (cpu::gemm_strided, cpu::gemm_grouped, which split products over the threads and run batches
// and experts side by side) against an f64-accumulated reference: transposes, padded leading
// dims, alpha/beta, beta = 0 over NaN, batches with a broadcast operand, grouped items of varying
// m and k, calls from inside a parallel region; and the selection rules.
#include <doctest/doctest.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <cstdint>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "core/cpu/blas_gemm.h"
#include "core/cpu/gemm_engine.h"
#include "core/error.h"

using namespace moegrad::core::cpu;
using moegrad::core::GemmGroups;
using moegrad::core::RowMajorGemm;

namespace {

// Restores the automatic choice when a test case ends.
struct EngineGuard {
  ~EngineGuard() { set_gemm_engine("auto"); }
};

std::vector<float> random_floats(std::int64_t n, unsigned seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> d(-1.0f, 1.0f);
  std::vector<float> v(static_cast<std::size_t>(n));
  for (float& x : v) x = d(rng);
  return v;
}

// Stored sizes of op(A) [m, k] / op(B) [k, n] / C [m, n] with leading dims g.lda/ldb/ldc.
std::int64_t a_elems(const RowMajorGemm& g) { return (g.trans_a ? g.k : g.m) * g.lda; }
std::int64_t b_elems(const RowMajorGemm& g) { return (g.trans_b ? g.n : g.k) * g.ldb; }
std::int64_t c_elems(const RowMajorGemm& g) { return g.m * g.ldc; }

// Checks C (after) against alpha * op(A) op(B) + beta * C (before) in f64; entries of C outside
// [m, n] (the ldc padding) must be untouched. Bound: k f32 roundings of the |terms| sum.
void check_product(const RowMajorGemm& g, float alpha, const float* a, const float* b, float beta,
                   const float* c_before, const float* c_after) {
  double worst = 0;
  for (std::int64_t i = 0; i < g.m; ++i)
    for (std::int64_t j = 0; j < g.ldc; ++j) {
      const std::int64_t at = i * g.ldc + j;
      if (j >= g.n) {
        REQUIRE(std::memcmp(&c_before[at], &c_after[at], sizeof(float)) == 0);
        continue;
      }
      double s = 0, scale = 0;
      for (std::int64_t p = 0; p < g.k; ++p) {
        const double x = g.trans_a ? a[p * g.lda + i] : a[i * g.lda + p];
        const double y = g.trans_b ? b[j * g.ldb + p] : b[p * g.ldb + j];
        s += x * y;
        scale += std::fabs(x * y);
      }
      double ref = alpha * s;
      scale = std::fabs(alpha) * scale;
      if (beta != 0.0f) {
        ref += static_cast<double>(beta) * c_before[at];
        scale += std::fabs(static_cast<double>(beta) * c_before[at]);
      }
      const double err = std::fabs(c_after[at] - ref) / std::max(scale, 1e-30);
      if (!(err <= worst)) worst = std::isnan(err) ? std::numeric_limits<double>::infinity() : err;
    }
  CHECK(worst <= static_cast<double>(g.k + 2) * std::ldexp(1.0, -23));
}

struct Shape {
  std::int64_t m, n, k;
};

// Small, odd, split-sized (over 2^18 multiply-adds: split by rows / by columns) and MoE-like.
const Shape kShapes[] = {{1, 1, 1}, {7, 13, 5}, {33, 70, 45}, {64, 96, 80}, {8, 200, 300}, {40, 256, 128}};

void run_strided_cases(const std::string& engine) {
  for (const Shape& s : kShapes)
    for (int t = 0; t < 4; ++t)
      for (int pad : {0, 3}) {
        RowMajorGemm g;
        g.trans_a = t & 1;
        g.trans_b = t & 2;
        g.m = s.m;
        g.n = s.n;
        g.k = s.k;
        g.lda = (g.trans_a ? s.m : s.k) + pad;
        g.ldb = (g.trans_b ? s.k : s.n) + pad;
        g.ldc = s.n + pad;
        CAPTURE(engine);
        CAPTURE(s.m);
        CAPTURE(s.n);
        CAPTURE(s.k);
        CAPTURE(t);
        CAPTURE(pad);
        // A batch of 3 with B broadcast (offset 0 each time), alpha/beta != 0/1; then one product
        // with beta = 0 over a NaN-filled C (BLAS semantics: C is not read).
        const std::int64_t batch = 3;
        const auto a = random_floats(a_elems(g) * batch, 1), b = random_floats(b_elems(g), 2);
        const auto c0 = random_floats(c_elems(g) * batch, 3);
        std::vector<float> c = c0;
        std::vector<std::int64_t> a_off, b_off, c_off;
        for (std::int64_t i = 0; i < batch; ++i) {
          a_off.push_back(i * a_elems(g));
          b_off.push_back(0);
          c_off.push_back(i * c_elems(g));
        }
        gemm_strided<float>(g, 0.5f, a.data(), b.data(), 0.25f, c.data(), batch, a_off.data(), b_off.data(),
                            c_off.data());
        for (std::int64_t i = 0; i < batch; ++i)
          check_product(g, 0.5f, a.data() + a_off[i], b.data(), 0.25f, c0.data() + c_off[i], c.data() + c_off[i]);

        std::vector<float> nan_c(static_cast<std::size_t>(c_elems(g)), std::numeric_limits<float>::quiet_NaN());
        const std::vector<float> nan_before = nan_c;
        const std::int64_t zero = 0;
        gemm_strided<float>(g, 1.0f, a.data(), b.data(), 0.0f, nan_c.data(), 1, &zero, &zero, &zero);
        check_product(g, 1.0f, a.data(), b.data(), 0.0f, nan_before.data(), nan_c.data());
      }
}

// Experts of varying rows (0 included) side by side; and the weight-gradient form, varying k.
void run_grouped_cases(const std::string& engine) {
  CAPTURE(engine);
  const std::vector<std::int64_t> sizes = {40, 0, 33, 1, 64, 17, 40, 25};
  for (bool vary_k : {false, true}) {
    CAPTURE(vary_k);
    RowMajorGemm g;  // forward: x [rows, 96] @ W [96, 80]; vary_k: x^T [96, rows] @ dy [rows, 80]
    g.trans_a = vary_k;
    g.m = 96;
    g.n = 80;
    g.k = 96;
    g.lda = 96;
    g.ldb = 80;
    g.ldc = 80;
    GemmGroups items;
    items.vary_k = vary_k;
    std::int64_t rows = 0;
    for (std::size_t e = 0; e < sizes.size(); ++e) {
      const std::int64_t r = sizes[e];
      if (vary_k)  // A = x [rows, 96] (lda 96), B = dy [rows, 80]; C = dW_e [96, 80]
        items.add(r, rows * 96, rows * 80, static_cast<std::int64_t>(e) * 96 * 80);
      else  // A = x [rows, 96], B = W_e [96, 80], C = y [rows, 80]
        items.add(r, rows * 96, static_cast<std::int64_t>(e) * 96 * 80, rows * 80);
      rows += r;
    }
    const std::int64_t e_count = static_cast<std::int64_t>(sizes.size());
    const auto a = random_floats(rows * 96, 4);
    const auto b = random_floats(vary_k ? rows * 80 : e_count * 96 * 80, 5);
    const auto c0 = random_floats(vary_k ? e_count * 96 * 80 : rows * 80, 6);
    std::vector<float> c = c0;
    gemm_grouped<float>(g, 1.0f, a.data(), b.data(), 1.0f, c.data(), items);
    for (std::size_t e = 0; e < sizes.size(); ++e) {
      RowMajorGemm ge = g;
      (vary_k ? ge.k : ge.m) = sizes[e];
      if (sizes[e] == 0 && !vary_k) continue;  // no rows: nothing to compare
      check_product(ge, 1.0f, a.data() + items.a_off[e], b.data() + items.b_off[e], 1.0f, c0.data() + items.c_off[e],
                    c.data() + items.c_off[e]);
    }
  }
}

}  // namespace

TEST_CASE("gemm engines: every engine matches the f64 reference through gemm_strided and gemm_grouped") {
  EngineGuard guard;
  const std::vector<std::string> names = gemm_engine_names();
  REQUIRE(!names.empty());
  CHECK(names.front() == "openblas");
  for (const std::string& name : names) {
    set_gemm_engine(name);
    REQUIRE(std::string(gemm_engine().name()) == name);
    run_strided_cases(name);
    run_grouped_cases(name);
  }
}

TEST_CASE("gemm engines: a call from inside a parallel region runs on its own thread") {
  EngineGuard guard;
  for (const std::string& name : gemm_engine_names()) {
    set_gemm_engine(name);
    CAPTURE(name);
    const RowMajorGemm g{false, true, 40, 128, 96, 96, 96, 128};
    const int threads = std::max(2, omp_get_max_threads());
    const auto a = random_floats(a_elems(g) * threads, 7), b = random_floats(b_elems(g), 8);
    std::vector<float> c(static_cast<std::size_t>(c_elems(g) * threads), 0.0f);
    const std::vector<float> c0 = c;
#pragma omp parallel num_threads(threads)
    {
      const std::int64_t t = omp_get_thread_num(), off_a = t * a_elems(g), off_b = 0, off_c = t * c_elems(g);
      gemm_strided<float>(g, 1.0f, a.data(), b.data(), 0.0f, c.data(), 1, &off_a, &off_b, &off_c);
    }
    for (int t = 0; t < threads; ++t)
      check_product(g, 1.0f, a.data() + t * a_elems(g), b.data(), 0.0f, c0.data() + t * c_elems(g),
                    c.data() + t * c_elems(g));
  }
}

TEST_CASE("gemm engines: the override picks what it names, auto follows the CPU, bad names are one line") {
  EngineGuard guard;
  set_gemm_engine("openblas");
  CHECK(std::string(gemm_engine().name()) == "openblas");
  CHECK(gemm_engine_summary().rfind("openblas (set_gemm_engine=openblas): OpenBLAS ", 0) == 0);
  set_gemm_engine("auto");
  const char* expected = onednn_gemm_engine() == nullptr ? "openblas"
                         : onednn_has_avx512()            ? "onednn"
                         : onednn_has_avx2()              ? "onednn_small_k"
                                                          : "openblas";
  CHECK(std::string(gemm_engine().name()) == expected);
  CHECK(gemm_engine_summary().find("(auto: ") != std::string::npos);
  if (onednn_gemm_engine()) {
    set_gemm_engine("onednn");
    CHECK(std::string(gemm_engine().name()) == "onednn");
    CHECK(gemm_engine_summary().find("oneDNN ") != std::string::npos);
  } else {
    CHECK_THROWS_WITH_AS(set_gemm_engine("onednn"),
                         doctest::Contains("gemm engine 'onednn' is not in this build"), moegrad::Error);
  }
  set_gemm_engine("openblas");
  CHECK_THROWS_WITH_AS(set_gemm_engine("mkl"), doctest::Contains("[set_gemm_engine] unknown gemm engine 'mkl' (available: openblas"),
                       moegrad::Error);
  CHECK(std::string(gemm_engine().name()) == "openblas");  // a bad name leaves the choice as it was
}

TEST_CASE("gemm engines: onednn_small_k runs oneDNN's product for k <= 256 and OpenBLAS's above") {
  const std::vector<std::string> names = gemm_engine_names();
  if (std::find(names.begin(), names.end(), "onednn_small_k") == names.end()) {
    MESSAGE("skipped: no oneDNN in this build");
    return;
  }
  EngineGuard guard;
  // Each engine's bits for one product; the split engine must give exactly one of them.
  const auto product = [](const char* engine, const RowMajorGemm& g, const std::vector<float>& a,
                          const std::vector<float>& b) {
    set_gemm_engine(engine);
    std::vector<float> c(static_cast<std::size_t>(c_elems(g)), 0.0f);
    const std::int64_t zero = 0;
    gemm_strided<float>(g, 1.0f, a.data(), b.data(), 0.0f, c.data(), 1, &zero, &zero, &zero);
    return c;
  };
  for (const std::int64_t k : {64, 256, 257, 1024}) {
    CAPTURE(k);
    const RowMajorGemm g{false, false, 37, 45, k, k, 45, 45};
    const auto a = random_floats(a_elems(g), 21), b = random_floats(b_elems(g), 22);
    const auto split = product("onednn_small_k", g, a, b);
    const auto dnnl = product("onednn", g, a, b), blas = product("openblas", g, a, b);
    const auto& want = k <= 256 ? dnnl : blas;
    CHECK(std::memcmp(split.data(), want.data(), split.size() * sizeof(float)) == 0);
    // The check tells the engines apart only where their bits differ (they sum in other orders).
    if (std::memcmp(dnnl.data(), blas.data(), dnnl.size() * sizeof(float)) == 0)
      MESSAGE("oneDNN and OpenBLAS gave the same bits at k = ", k);
  }
  set_gemm_engine("onednn_small_k");
  CHECK(gemm_engine_summary().find(" for k <= 256, else OpenBLAS ") != std::string::npos);
}
