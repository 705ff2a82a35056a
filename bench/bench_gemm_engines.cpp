// f32 GEMM engines at the MoE layers' expert shapes (issue 16's table), on all OpenMP threads,
// one JSON line per (case, engine) on stdout and a markdown table on stderr. Columns:
//   openblas    moegrad's path today: core::cpu::gemm_strided / gemm_grouped (one product split
//               over the threads, experts side by side) with the OpenBLAS engine; run under
//               OPENBLAS_CORETYPE=SkylakeX for OpenBLAS's AVX-512 kernels (the line's
//               "openblas_core" says which kernels ran; tests and CI never set it)
//   onednn      the same moegrad path with the oneDNN engine (dnnl_sgemm per call)
//   onednn_small_k  the same path, oneDNN for products with k <= 256 and OpenBLAS above
//   onednn_own  dnnl_sgemm called directly, oneDNN threading the product itself
//   blis_skx    BLIS 0.9.0's typed API (bli_sgemm_ex), its skx configuration forced through
//               BLIS_ARCH_TYPE (its only run-time selector), BLIS threading each product; the
//               library is dlopen'ed privately (RTLD_LOCAL | RTLD_DEEPBIND) so its BLAS/CBLAS
//               symbols never replace OpenBLAS's in moegrad
// Cases (or --shapes): each (M x K x N) as the forward product A[M, K] @ B[K, N] and the backward's two
// (dA = dC @ B^T: M x N x K with B transposed; dB = A^T @ dC: K x M x N with A transposed), same
// FLOPs; and grouped cases, 16 experts of the small-M shapes through gemm_grouped (the library
// columns loop over the experts). Every engine's first result (C filled with NaN, beta = 0) is
// checked against an f64-accumulated reference: max |c - ref| / sum_p |a_ip b_pj| over all
// entries (a sample of 4096 for large products), which must stay below k * 2^-23.
// Rates: 2 M N K / time, median over interleaved repeats (each engine once per repeat), and the
// fraction of the measured f32 FMA peak (bench/fma_peak.h).
#include <dlfcn.h>
#include <fmt/format.h>
#include <omp.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "bench/fma_peak.h"
#include "core/checked_math.h"
#include "core/cpu/blas_gemm.h"
#include "core/cpu/gemm_engine.h"
#include "tools/cli.h"
#ifdef MOEGRAD_BENCH_DNNL
#include <oneapi/dnnl/dnnl.h>
#endif
#ifdef MOEGRAD_BENCH_BLIS
#include <blis.h>
#endif

extern "C" char* openblas_get_corename(void);

using moegrad::core::GemmGroups;
using moegrad::core::RowMajorGemm;

namespace {

// One timed case: a single product, or items of one shape at offsets (grouped).
struct Case {
  std::string name;       // e.g. "40x1024x1024 dA"
  RowMajorGemm g;         // the product (grouped: each item's)
  std::int64_t items = 1; // grouped: items of g, operands at i * (item size)
  double flops() const { return 2.0 * static_cast<double>(g.m * g.n * g.k * items); }
  std::int64_t a_size() const { return (g.trans_a ? g.k : g.m) * g.lda; }
  std::int64_t b_size() const { return (g.trans_b ? g.n : g.k) * g.ldb; }
  std::int64_t c_size() const { return g.m * g.ldc; }
};

// (M, K, N) as the forward product and its two backward products (row-major, dense lds).
void add_product(std::vector<Case>& cases, std::int64_t m, std::int64_t k, std::int64_t n, std::int64_t items) {
  const std::string shape = fmt::format("{}{}x{}x{}", items > 1 ? fmt::format("{} x ", items) : "", m, k, n);
  cases.push_back({shape + " fwd", RowMajorGemm{false, false, m, n, k, k, n, n}, items});
  cases.push_back({shape + " dA=dC@B^T", RowMajorGemm{false, true, m, k, n, n, n, k}, items});
  cases.push_back({shape + " dB=A^T@dC", RowMajorGemm{true, false, k, n, m, k, n, n}, items});
}

// One --shapes entry: [ITEMS*]MxKxN with positive sizes (ITEMS > 1: grouped).
struct ShapeSpec {
  std::int64_t items = 1, m = 0, k = 0, n = 0;
};

ShapeSpec parse_shape(const std::string& text) {
  ShapeSpec s;
  std::string rest = text;
  const auto bad = [&]() -> moegrad::cli::UsageError {
    return moegrad::cli::UsageError(
        fmt::format("--shapes: '{}' is not [ITEMS*]MxKxN with positive integers (e.g. 1024x64x256 or 8*128x64x256)",
                    text));
  };
  const auto number = [&](std::string part) {
    if (part.empty() || part.size() > 9 || part.find_first_not_of("0123456789") != std::string::npos) throw bad();
    const std::int64_t v = std::stoll(part);
    if (v <= 0) throw bad();
    return v;
  };
  if (const std::size_t star = rest.find('*'); star != std::string::npos) {
    s.items = number(rest.substr(0, star));
    rest = rest.substr(star + 1);
  }
  const std::size_t x1 = rest.find('x'), x2 = x1 == std::string::npos ? x1 : rest.find('x', x1 + 1);
  if (x2 == std::string::npos) throw bad();
  s.m = number(rest.substr(0, x1));
  s.k = number(rest.substr(x1 + 1, x2 - x1 - 1));
  s.n = number(rest.substr(x2 + 1));
  // Each operand (items of A, B or C) within 2^31 floats; the products are taken without overflow.
  const auto fits = [&](std::int64_t a, std::int64_t b) {
    std::int64_t size = 0;
    return moegrad::core::mul_fits(s.items, a, size) && moegrad::core::mul_fits(size, b, size) &&
           size <= (std::int64_t{1} << 31);
  };
  if (!fits(s.m, s.k) || !fits(s.k, s.n) || !fits(s.m, s.n))
    throw moegrad::cli::UsageError(fmt::format("--shapes: '{}' needs an operand of over 2^31 floats", text));
  return s;
}

std::vector<Case> make_cases(bool quick, const std::vector<ShapeSpec>& shapes) {
  std::vector<Case> cases;
  if (!shapes.empty()) {
    for (const ShapeSpec& s : shapes) add_product(cases, s.m, s.k, s.n, s.items);
    return cases;
  }
  if (quick) {
    add_product(cases, 33, 70, 45, 1);
    add_product(cases, 5, 64, 40, 3);
    return cases;
  }
  for (auto [m, k, n] : {std::array<std::int64_t, 3>{512, 256, 1024}, {256, 1024, 4096}, {256, 4096, 1024},
                         {32, 1024, 512}, {40, 1024, 1024}, {2048, 2048, 2048}})
    add_product(cases, m, k, n, 1);
  add_product(cases, 32, 1024, 512, 16);
  add_product(cases, 40, 1024, 1024, 16);
  return cases;
}

// The operands of a case: item i's A, B, C at i * a_size(), ...
struct Operands {
  std::vector<float> a, b, c;
};

// f64 reference of C's entry (i, j) of item `it` and the scale sum_p |a_ip b_pj|.
std::pair<double, double> reference(const Case& cs, const Operands& op, std::int64_t it, std::int64_t i,
                                    std::int64_t j) {
  const RowMajorGemm& g = cs.g;
  const float* a = op.a.data() + it * cs.a_size();
  const float* b = op.b.data() + it * cs.b_size();
  double s = 0, scale = 0;
  for (std::int64_t p = 0; p < g.k; ++p) {
    const double x = g.trans_a ? a[p * g.lda + i] : a[i * g.lda + p];
    const double y = g.trans_b ? b[j * g.ldb + p] : b[p * g.ldb + j];
    s += x * y;
    scale += std::fabs(x * y);
  }
  return {s, scale};
}

// Max relative error of C (all entries, or 4096 sampled when the product is large).
double max_rel_error(const Case& cs, const Operands& op) {
  const RowMajorGemm& g = cs.g;
  std::mt19937_64 rng(7);
  const bool all = g.m * g.n * g.k * cs.items <= (std::int64_t{1} << 26);
  const std::int64_t checks = all ? g.m * g.n * cs.items : 4096;
  double worst = 0;
  for (std::int64_t t = 0; t < checks; ++t) {
    const std::int64_t e = all ? t : static_cast<std::int64_t>(rng() % static_cast<std::uint64_t>(g.m * g.n * cs.items));
    const std::int64_t it = e / (g.m * g.n), i = (e / g.n) % g.m, j = e % g.n;
    const auto [ref, scale] = reference(cs, op, it, i, j);
    const double c = op.c[static_cast<std::size_t>(it * cs.c_size() + i * g.ldc + j)];
    const double err = std::fabs(c - ref) / std::max(scale, std::numeric_limits<double>::min());
    if (!(err <= worst)) worst = std::isnan(err) ? std::numeric_limits<double>::infinity() : err;
    if (std::isinf(worst)) break;
  }
  return worst;
}

// One candidate: runs a whole case (all its items) on the operands.
struct Engine {
  std::string name;
  std::function<void(const Case&, Operands&)> run;
};

// moegrad's own path with the named engine selected (set_gemm_engine).
Engine moegrad_path(const std::string& engine) {
  return {engine, [engine](const Case& cs, Operands& op) {
            moegrad::core::cpu::set_gemm_engine(engine);
            if (cs.items == 1) {
              const std::int64_t at = 0;
              moegrad::core::cpu::gemm_strided<float>(cs.g, 1.0f, op.a.data(), op.b.data(), 0.0f, op.c.data(), 1, &at,
                                                      &at, &at);
              return;
            }
            GemmGroups groups;
            for (std::int64_t i = 0; i < cs.items; ++i)
              groups.add(cs.g.m, i * cs.a_size(), i * cs.b_size(), i * cs.c_size());
            moegrad::core::cpu::gemm_grouped<float>(cs.g, 1.0f, op.a.data(), op.b.data(), 0.0f, op.c.data(), groups);
          }};
}

// A library called directly, one product (item) after another, each threaded by the library.
template <class Product>
Engine direct(const std::string& name, Product product) {
  return {name, [product](const Case& cs, Operands& op) {
            for (std::int64_t i = 0; i < cs.items; ++i)
              product(cs.g, op.a.data() + i * cs.a_size(), op.b.data() + i * cs.b_size(), op.c.data() + i * cs.c_size());
          }};
}

#ifdef MOEGRAD_BENCH_BLIS
// What BLIS's skx kernels execute: AVX-512F, DQ, BW and VL.
bool cpu_runs_skx() {
  return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
         __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl");
}

// BLIS through dlopen: its typed gemm with strides (transposes as swapped strides).
struct Blis {
  decltype(&bli_sgemm_ex) sgemm = nullptr;
  decltype(&bli_thread_set_num_threads) set_threads = nullptr;
  decltype(&bli_arch_query_id) arch = nullptr;
  decltype(&bli_arch_string) arch_string = nullptr;
  decltype(&bli_info_get_version_str) version = nullptr;
  std::string why_not;

  Blis() {
    // skx's kernels are AVX-512 code: forced on a CPU without it they die of SIGILL.
    if (!cpu_runs_skx()) {
      why_not = "this CPU lacks AVX-512 (F, DQ, BW, VL), which BLIS's skx kernels need";
      return;
    }
    // BLIS reads BLIS_ARCH_TYPE (a numeric arch_t) once, at its initialisation.
    setenv("BLIS_ARCH_TYPE", std::to_string(static_cast<int>(BLIS_ARCH_SKX)).c_str(), 1);
    void* h = nullptr;
    for (const char* lib : {"libblis.so.4", "/usr/lib/x86_64-linux-gnu/blis-openmp/libblis.so.4"})
      if ((h = dlopen(lib, RTLD_NOW | RTLD_LOCAL | RTLD_DEEPBIND))) break;
    if (!h) {
      why_not = dlerror();
      return;
    }
    sgemm = reinterpret_cast<decltype(sgemm)>(dlsym(h, "bli_sgemm_ex"));
    set_threads = reinterpret_cast<decltype(set_threads)>(dlsym(h, "bli_thread_set_num_threads"));
    arch = reinterpret_cast<decltype(arch)>(dlsym(h, "bli_arch_query_id"));
    arch_string = reinterpret_cast<decltype(arch_string)>(dlsym(h, "bli_arch_string"));
    version = reinterpret_cast<decltype(version)>(dlsym(h, "bli_info_get_version_str"));
    if (!sgemm || !set_threads || !arch || !arch_string || !version) {
      why_not = "libblis lacks bli_sgemm_ex / bli_thread_set_num_threads / bli_arch_*";
      sgemm = nullptr;
      return;
    }
    set_threads(omp_get_max_threads());
    if (arch() != BLIS_ARCH_SKX) {
      why_not = fmt::format("BLIS_ARCH_TYPE=skx not honoured (runs {})", arch_string(arch()));
      sgemm = nullptr;
    }
  }

  void product(const RowMajorGemm& g, const float* a, const float* b, float* c) const {
    float one = 1.0f, zero = 0.0f;
    // op(A)[i, p] at a + i * rs + p * cs.
    const inc_t rsa = g.trans_a ? 1 : g.lda, csa = g.trans_a ? g.lda : 1;
    const inc_t rsb = g.trans_b ? 1 : g.ldb, csb = g.trans_b ? g.ldb : 1;
    sgemm(BLIS_NO_TRANSPOSE, BLIS_NO_TRANSPOSE, g.m, g.n, g.k, &one, const_cast<float*>(a), rsa, csa,
          const_cast<float*>(b), rsb, csb, &zero, c, g.ldc, 1, nullptr, nullptr);
  }
};
#endif

struct Config {
  bool quick = false;
  std::vector<ShapeSpec> shapes;     // empty: the expert shapes
  std::vector<std::string> engines;  // empty: all available
  double seconds = 0.2;              // per engine and case, about
};

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const std::size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

double seconds_of(const std::function<void()>& f) {
  const auto t0 = std::chrono::steady_clock::now();
  f();
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

int run_bench(const Config& cfg) {
  std::vector<Engine> available;
  for (const std::string& e : moegrad::core::cpu::gemm_engine_names()) available.push_back(moegrad_path(e));
#ifdef MOEGRAD_BENCH_DNNL
  available.push_back(direct("onednn_own", [](const RowMajorGemm& g, const float* a, const float* b, float* c) {
    if (dnnl_sgemm(g.trans_a ? 'T' : 'N', g.trans_b ? 'T' : 'N', g.m, g.n, g.k, 1.0f, a, g.lda, b, g.ldb, 0.0f, c,
                   g.ldc) != dnnl_success)
      std::abort();
  }));
#endif
  std::string blis_version = "none";
#ifdef MOEGRAD_BENCH_BLIS
  static const Blis blis;
  if (blis.sgemm) {
    blis_version = fmt::format("BLIS {} ({})", blis.version(), blis.arch_string(blis.arch()));
    available.push_back(direct("blis_skx", [](const RowMajorGemm& g, const float* a, const float* b, float* c) {
      blis.product(g, a, b, c);
    }));
  } else {
    blis_version = "BLIS unavailable: " + blis.why_not;
  }
#endif
  std::vector<Engine> engines;
  for (const Engine& e : available)
    if (cfg.engines.empty() || std::find(cfg.engines.begin(), cfg.engines.end(), e.name) != cfg.engines.end())
      engines.push_back(e);
  for (const std::string& want : cfg.engines)
    if (std::none_of(engines.begin(), engines.end(), [&](const Engine& e) { return e.name == want; })) {
      std::string names;
      for (const Engine& e : available) names += (names.empty() ? "" : ", ") + e.name;
      throw moegrad::cli::UsageError(fmt::format("--engines: '{}' is not available here (available: {})", want, names));
    }

  const moegrad::perf::FmaPeak peak = moegrad::perf::measure_fma_peak();
  const char* core_type = openblas_get_corename();
  fmt::print(stderr, "bench_gemm_engines: {} threads, f32 FMA peak {:.1f} GFLOP/s ({}), OpenBLAS kernels {}, {}\n",
             omp_get_max_threads(), peak.gflops, peak.isa, core_type, blis_version);

  std::string table = "| case |";
  for (const Engine& e : engines) table += " " + e.name + " |";
  table += "\n|---|";
  for (std::size_t i = 0; i < engines.size(); ++i) table += "---|";
  table += "\n";
  bool all_ok = true;
  std::mt19937 rng(1);
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  for (const Case& cs : make_cases(cfg.quick, cfg.shapes)) {
    Operands op;
    op.a.resize(static_cast<std::size_t>(cs.a_size() * cs.items));
    op.b.resize(static_cast<std::size_t>(cs.b_size() * cs.items));
    for (float& x : op.a) x = dist(rng);
    for (float& x : op.b) x = dist(rng);
    op.c.assign(static_cast<std::size_t>(cs.c_size() * cs.items), 0.0f);
    // First call per engine: the check (C starts as NaN; beta = 0 must not read it) and the
    // repeat count from its time.
    std::vector<double> err(engines.size());
    int repeats = cfg.quick ? 1 : 3;
    for (std::size_t e = 0; e < engines.size(); ++e) {
      std::fill(op.c.begin(), op.c.end(), std::numeric_limits<float>::quiet_NaN());
      const double t = seconds_of([&] { engines[e].run(cs, op); });
      err[e] = max_rel_error(cs, op);
      if (!cfg.quick) repeats = std::max(repeats, std::min(50, static_cast<int>(cfg.seconds / std::max(t, 1e-6))));
    }
    std::vector<std::vector<double>> rate(engines.size());
    for (int r = 0; r < repeats; ++r)
      for (std::size_t e = 0; e < engines.size(); ++e)
        rate[e].push_back(cs.flops() / seconds_of([&] { engines[e].run(cs, op); }) * 1e-9);
    table += "| " + cs.name + " |";
    const double bound = static_cast<double>(cs.g.k) * std::ldexp(1.0, -23);
    for (std::size_t e = 0; e < engines.size(); ++e) {
      const double gf = median(rate[e]), best = *std::max_element(rate[e].begin(), rate[e].end());
      const bool ok = err[e] <= bound;
      all_ok = all_ok && ok;
      fmt::print("{{\"bench\":\"gemm_engine\",\"case\":\"{}\",\"engine\":\"{}\",\"m\":{},\"n\":{},\"k\":{},"
                 "\"trans_a\":{},\"trans_b\":{},\"items\":{},\"threads\":{},\"repeat\":{},\"gflops\":{:.1f},"
                 "\"gflops_best\":{:.1f},\"fma_peak_gflops\":{:.1f},\"fma_isa\":\"{}\",\"peak_fraction\":{:.3f},"
                 "\"max_rel_err\":{:.3g},\"err_bound\":{:.3g},\"ok\":{},\"openblas_core\":\"{}\",\"quick\":{}}}\n",
                 cs.name, engines[e].name, cs.g.m, cs.g.n, cs.g.k, cs.g.trans_a, cs.g.trans_b, cs.items,
                 omp_get_max_threads(), repeats, gf, best, peak.gflops, peak.isa, gf / peak.gflops, err[e], bound, ok,
                 core_type, cfg.quick);
      std::fflush(stdout);
      table += fmt::format(" {:.0f} ({:.2f}){} |", gf, gf / peak.gflops, ok ? "" : " WRONG");
      if (!ok)
        fmt::print(stderr, "bench_gemm_engines: {} on {}: max relative error {:.3g} above {:.3g}\n", engines[e].name,
                   cs.name, err[e], bound);
    }
    table += "\n";
  }
  fmt::print(stderr, "\nGFLOP/s (fraction of the {:.0f} GFLOP/s f32 FMA peak), median, {} threads:\n{}",
             peak.gflops, omp_get_max_threads(), table);
  return all_ok ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"f32 GEMM engines at the MoE expert shapes, one JSON line per (case, engine).", "bench_gemm_engines"};
  app.footer(
      "Threads: OMP_NUM_THREADS (all cores by default). OPENBLAS_CORETYPE selects OpenBLAS's kernels for\n"
      "the openblas column (the line's openblas_core names them). Exit 1 if a result is off the reference.");
  Config cfg;
  std::string list;
  app.add_option("--engines", list,
                 "comma-separated among openblas, onednn, onednn_small_k, onednn_own, blis_skx (default: all built)")
      ->type_name("LIST");
  app.add_flag("--quick", cfg.quick, "tiny shapes, 1 repeat (smoke test; figures not meaningful)")
      ->disable_flag_override();
  std::string shapes;
  app.add_option("--shapes", shapes,
                 "comma-separated [ITEMS*]MxKxN products to time instead of the expert shapes, e.g.\n"
                 "1024x64x256,8*256x64x256 (ITEMS > 1: that many products side by side, grouped)")
      ->type_name("LIST");
  return moegrad::cli::run(app, argc, argv, [&] {
    for (const std::string& e : moegrad::cli::split_commas(list))  // empty pieces skipped
      if (!e.empty()) cfg.engines.push_back(e);
    for (const std::string& s : moegrad::cli::split_commas(shapes))
      if (!s.empty()) cfg.shapes.push_back(parse_shape(s));
    return run_bench(cfg);
  });
}
