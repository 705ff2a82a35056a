// The oneDNN engine: dnnl_sgemm, which takes moegrad's row-major convention as it is. oneDNN
// (Debian's build) threads with OpenMP, the same libgomp pool as OpenBLAS's OpenMP build and
// moegrad's own loops: called inside a parallel region (gemm_grouped's experts side by side) it
// runs on the calling thread alone, outside one on omp_get_max_threads() threads, so the two
// never oversubscribe the cores. Compiled only when CMake found oneDNN (MOEGRAD_WITH_DNNL).
#include "core/cpu/gemm_engine.h"

#include <oneapi/dnnl/dnnl.h>
#include <fmt/format.h>
#include <omp.h>

#include <cstdio>
#include <cstdlib>

#include "core/error.h"

namespace moegrad::core::cpu {
namespace {

bool isa_at_least(dnnl_cpu_isa_t have, dnnl_cpu_isa_t want) {
  return (static_cast<unsigned>(have) & static_cast<unsigned>(want)) == static_cast<unsigned>(want);
}

const char* isa_name(dnnl_cpu_isa_t isa) {
  if (isa_at_least(isa, dnnl_cpu_isa_avx512_core_bf16)) return "avx512_core_bf16";
  if (isa_at_least(isa, dnnl_cpu_isa_avx512_core)) return "avx512_core";
  if (isa_at_least(isa, dnnl_cpu_isa_avx2)) return "avx2";
  if (isa_at_least(isa, dnnl_cpu_isa_avx)) return "avx";
  return "sse41";
}

class OneDnnEngine final : public GemmEngine {
 public:
  const char* name() const override { return "onednn"; }
  std::string describe() const override {
    const dnnl_version_t* v = dnnl_version();
    return fmt::format("oneDNN {}.{}.{} ({})", v->major, v->minor, v->patch, isa_name(dnnl_get_effective_cpu_isa()));
  }
  void sgemm(const RowMajorGemm& g, float alpha, const float* a, const float* b, float beta,
             float* c) const override {
    const dnnl_status_t s = dnnl_sgemm(g.trans_a ? 'T' : 'N', g.trans_b ? 'T' : 'N', g.m, g.n, g.k, alpha, a, g.lda,
                                       b, g.ldb, beta, c, g.ldc);
    if (s == dnnl_success) return;
    const std::string what = fmt::format("dnnl_sgemm failed (status {}) on [{}, {}] @ [{}, {}] (trans {}{}, ld {} {} {})",
                                         static_cast<int>(s), g.m, g.k, g.k, g.n, g.trans_a ? 'T' : 'N',
                                         g.trans_b ? 'T' : 'N', g.lda, g.ldb, g.ldc);
    if (!omp_in_parallel()) fail("matmul", "{}", what);
    std::fprintf(stderr, "moegrad: [matmul] %s\n", what.c_str());  // no exception may leave the region
    std::abort();
  }
};

}  // namespace

const GemmEngine* onednn_gemm_engine() {
  static const OneDnnEngine engine;
  return &engine;
}

bool onednn_has_avx512() { return isa_at_least(dnnl_get_effective_cpu_isa(), dnnl_cpu_isa_avx512_core); }

}  // namespace moegrad::core::cpu
