#include "core/cpu/gemm_engine.h"

#include <cblas.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <mutex>

#include "core/error.h"
#include "core/kernels/bf16_math.h"

extern "C" char* openblas_get_config(void);

namespace moegrad::core::cpu {
namespace {

// The stored [rows, cols] bf16 matrix with row stride ld, widened to a contiguous f32 one.
const float* widen(const Bf16* src, std::int64_t rows, std::int64_t cols, std::int64_t ld, std::vector<float>& dst) {
  dst.resize(static_cast<std::size_t>(rows * cols));
  for (std::int64_t r = 0; r < rows; ++r)
    for (std::int64_t j = 0; j < cols; ++j) dst[r * cols + j] = math::bf16_bits_to_float(src[r * ld + j].bits);
  return dst.data();
}

// cblas_sgemm on the column-major form of the product (to_col_major: operands swap places).
class OpenBlasEngine final : public GemmEngine {
 public:
  const char* name() const override { return "openblas"; }
  std::string describe() const override { return openblas_get_config(); }  // "OpenBLAS 0.3.21 ..."
  void sgemm(const RowMajorGemm& row, float alpha, const float* a, const float* b, float beta,
             float* c) const override {
    const ColMajorGemm g = to_col_major(row);
    cblas_sgemm(CblasColMajor, g.trans_first ? CblasTrans : CblasNoTrans,
                g.trans_second ? CblasTrans : CblasNoTrans, static_cast<int>(g.m),
                static_cast<int>(g.n), static_cast<int>(g.k), alpha, b,
                static_cast<int>(g.ld_first), a, static_cast<int>(g.ld_second), beta, c,
                static_cast<int>(g.ldc));
  }
};

const OpenBlasEngine kOpenBlas;

// oneDNN for products whose inner dimension k is at most kSmallK, OpenBLAS for the rest: the
// default on AVX2 CPUs without AVX-512. Measured on Zen 3 (docs/benchmarks.md, "GEMM engines"),
// dnnl_sgemm leads at k <= 256 (the language model's forward and dA products: 0.56-0.77 of the
// 2-thread peak against 0.44-0.64) and trails at long k (256x4096x1024: 0.41 against 0.70).
// The split depends on the shape alone, so a run's results do not depend on timing.
class OneDnnSmallKEngine final : public GemmEngine {
 public:
  static constexpr std::int64_t kSmallK = 256;
  explicit OneDnnSmallKEngine(const GemmEngine& dnnl) : dnnl_(dnnl) {}
  const char* name() const override { return "onednn_small_k"; }
  std::string describe() const override {
    return dnnl_.describe() + " for k <= " + std::to_string(kSmallK) + ", else " + kOpenBlas.describe();
  }
  void sgemm(const RowMajorGemm& g, float alpha, const float* a, const float* b, float beta,
             float* c) const override {
    pick(g).sgemm(g, alpha, a, b, beta, c);
  }
  void gemm_bf16(const RowMajorGemm& g, float alpha, const Bf16* a, const Bf16* b, float beta,
                 float* c) const override {
    pick(g).gemm_bf16(g, alpha, a, b, beta, c);
  }
  std::string describe_bf16() const override {
    return dnnl_.describe_bf16() + " for k <= " + std::to_string(kSmallK) + "; " + kOpenBlas.describe_bf16() + " above";
  }

 private:
  const GemmEngine& pick(const RowMajorGemm& g) const { return g.k <= kSmallK ? dnnl_ : kOpenBlas; }
  const GemmEngine& dnnl_;
};

const GemmEngine* onednn_small_k_engine() {
  static const GemmEngine* engine = []() -> const GemmEngine* {
    const GemmEngine* dnnl = onednn_gemm_engine();
    if (!dnnl) return nullptr;
    static const OneDnnSmallKEngine split(*dnnl);
    return &split;
  }();
  return engine;
}

struct Choice {
  const GemmEngine* engine = nullptr;
  std::string why;
};

// The CPU-based default (docs/benchmarks.md, "GEMM engines"): oneDNN where it has AVX-512
// kernels (2x the AVX2 FMA rate on Zen 5, and ahead at the expert shapes on Zen 4); with AVX2
// alone oneDNN for small k and OpenBLAS for the rest (Zen 3); OpenBLAS on older CPUs.
Choice auto_choice() {
  if (!onednn_gemm_engine()) return {&kOpenBlas, "auto: built without oneDNN"};
  if (onednn_has_avx512()) return {onednn_gemm_engine(), "auto: oneDNN has AVX-512 kernels for this CPU"};
  if (onednn_has_avx2())
    return {onednn_small_k_engine(), "auto: AVX2 without AVX-512, oneDNN ahead at k <= 256 only"};
  return {&kOpenBlas, "auto: no AVX2 on this CPU"};
}

std::string names_joined() {
  std::string s;
  for (const std::string& n : gemm_engine_names()) s += (s.empty() ? "" : ", ") + n;
  return s + ", auto";
}

// `source` names where the name came from, for the error line and the summary.
Choice resolve(std::string_view name, const char* source) {
  if (name == "auto" || name.empty()) return auto_choice();
  if (name == "openblas") return {&kOpenBlas, std::string(source) + "=openblas"};
  if (name == "onednn") {
    const GemmEngine* dnnl = onednn_gemm_engine();
    MOEGRAD_CHECK(dnnl, source, "gemm engine 'onednn' is not in this build (configured without oneDNN; available: {})",
                  names_joined());
    return {dnnl, std::string(source) + "=onednn"};
  }
  if (name == "onednn_small_k") {
    const GemmEngine* split = onednn_small_k_engine();
    MOEGRAD_CHECK(split, source,
                  "gemm engine 'onednn_small_k' is not in this build (configured without oneDNN; available: {})",
                  names_joined());
    return {split, std::string(source) + "=onednn_small_k"};
  }
  fail(source, "unknown gemm engine '{}' (available: {})", name, names_joined());
}

std::mutex g_mutex;
std::atomic<const GemmEngine*> g_engine{nullptr};
std::string g_why;  // guarded by g_mutex

}  // namespace

void GemmEngine::gemm_bf16(const RowMajorGemm& g, float alpha, const Bf16* a, const Bf16* b, float beta,
                           float* c) const {
  thread_local std::vector<float> wa, wb;  // reused: one pair per thread (grouped items run side by side)
  const std::int64_t a_rows = g.trans_a ? g.k : g.m, a_cols = g.trans_a ? g.m : g.k;
  const std::int64_t b_rows = g.trans_b ? g.n : g.k, b_cols = g.trans_b ? g.k : g.n;
  RowMajorGemm w = g;
  w.lda = std::max<std::int64_t>(1, a_cols);
  w.ldb = std::max<std::int64_t>(1, b_cols);
  sgemm(w, alpha, widen(a, a_rows, a_cols, g.lda, wa), widen(b, b_rows, b_cols, g.ldb, wb), beta, c);
}

std::string GemmEngine::describe_bf16() const { return std::string("bf16 widened to f32, then ") + name() + " sgemm"; }

const GemmEngine& gemm_engine() {
  if (const GemmEngine* e = g_engine.load(std::memory_order_acquire)) return *e;
  std::lock_guard<std::mutex> lock(g_mutex);
  if (const GemmEngine* e = g_engine.load(std::memory_order_relaxed)) return *e;
  const char* env = std::getenv("MOEGRAD_GEMM");
  Choice c = resolve(env ? env : "", "MOEGRAD_GEMM");
  g_why = std::move(c.why);
  g_engine.store(c.engine, std::memory_order_release);
  return *c.engine;
}

void set_gemm_engine(std::string_view name) {
  Choice c = resolve(name, "set_gemm_engine");
  std::lock_guard<std::mutex> lock(g_mutex);
  g_why = std::move(c.why);
  g_engine.store(c.engine, std::memory_order_release);
}

std::string bf16_gemm_summary() { return gemm_engine().describe_bf16(); }

std::vector<std::string> gemm_engine_names() {
  std::vector<std::string> names{kOpenBlas.name()};
  if (const GemmEngine* dnnl = onednn_gemm_engine()) names.emplace_back(dnnl->name());
  if (const GemmEngine* split = onednn_small_k_engine()) names.emplace_back(split->name());
  return names;
}

std::string gemm_engine_summary() {
  const GemmEngine& e = gemm_engine();
  std::lock_guard<std::mutex> lock(g_mutex);
  return std::string(e.name()) + " (" + g_why + "): " + e.describe();
}

}  // namespace moegrad::core::cpu
