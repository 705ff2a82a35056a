// The oneDNN engine: dnnl_sgemm (and dnnl_gemm_bf16bf16f32 for the bf16 -> f32 products of
// --precision bf16), which take moegrad's row-major convention as it is. oneDNN
// (Debian's build) threads with OpenMP, the same libgomp pool as OpenBLAS's OpenMP build and
// moegrad's own loops: called inside a parallel region (gemm_grouped's experts side by side) it
// runs on the calling thread alone, outside one on omp_get_max_threads() threads, so the two
// never oversubscribe the cores. Compiled only when CMake found oneDNN (MOEGRAD_WITH_DNNL).
#include "core/cpu/gemm_engine.h"

#include <oneapi/dnnl/dnnl.h>
#include <fmt/format.h>
#include <omp.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>

#include "core/error.h"

// oneDNN 2.x exports its bf16 GEMM (DNNL_API in src/cpu/gemm/gemm.hpp; its own tests and other
// projects declare it the same way) but its public header does not declare it. Row-major, like
// dnnl_sgemm; the bfloat16_t operands are 16-bit values (moegrad's Bf16 bits).
extern "C" dnnl_status_t dnnl_gemm_bf16bf16f32(char transa, char transb, dnnl_dim_t M, dnnl_dim_t N, dnnl_dim_t K,
                                               float alpha, const std::uint16_t* A, dnnl_dim_t lda,
                                               const std::uint16_t* B, dnnl_dim_t ldb, float beta, float* C,
                                               dnnl_dim_t ldc);

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
    if (s != dnnl_success) failed("dnnl_sgemm", s, g);
  }
  // oneDNN's bf16 GEMM where it runs vdpbf16ps (AVX512_BF16); elsewhere the widening default.
  void gemm_bf16(const RowMajorGemm& g, float alpha, const Bf16* a, const Bf16* b, float beta,
                 float* c) const override {
    if (!native_bf16()) return GemmEngine::gemm_bf16(g, alpha, a, b, beta, c);
    static_assert(sizeof(Bf16) == sizeof(std::uint16_t));
    const dnnl_status_t s = dnnl_gemm_bf16bf16f32(g.trans_a ? 'T' : 'N', g.trans_b ? 'T' : 'N', g.m, g.n, g.k, alpha,
                                                  &a->bits, g.lda, &b->bits, g.ldb, beta, c, g.ldc);
    if (s != dnnl_success) failed("dnnl_gemm_bf16bf16f32", s, g);
  }
  std::string describe_bf16() const override {
    if (!native_bf16()) return GemmEngine::describe_bf16();
    return fmt::format("oneDNN gemm_bf16bf16f32 ({})", isa_name(dnnl_get_effective_cpu_isa()));
  }

 private:
  static bool native_bf16() { return isa_at_least(dnnl_get_effective_cpu_isa(), dnnl_cpu_isa_avx512_core_bf16); }

  [[noreturn]] static void failed(const char* call, dnnl_status_t s, const RowMajorGemm& g) {
    const std::string what = fmt::format("{} failed (status {}) on [{}, {}] @ [{}, {}] (trans {}{}, ld {} {} {})",
                                         call, static_cast<int>(s), g.m, g.k, g.k, g.n, g.trans_a ? 'T' : 'N',
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

bool onednn_has_avx2() { return isa_at_least(dnnl_get_effective_cpu_isa(), dnnl_cpu_isa_avx2); }

}  // namespace moegrad::core::cpu
