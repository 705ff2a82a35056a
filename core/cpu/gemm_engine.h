// The library that runs moegrad's f32 CPU GEMMs (cpu::gemm_strided / gemm_grouped call it for
// every single-product call; their threading and grouping stay theirs). f64 always goes to
// OpenBLAS dgemm (gradcheck's reference path). Engines:
//   openblas  cblas_sgemm (any x86-64; the AVX2 kernels under OPENBLAS_CORETYPE=Haswell)
//   onednn    dnnl_sgemm (oneDNN; its own dispatch on the CPU's ISA), when the build found it
//   onednn_small_k  oneDNN for products with inner dimension k <= 256, OpenBLAS for the rest
// The default is chosen at run time from the CPU: onednn where oneDNN reports AVX-512 kernels
// (avx512_core), onednn_small_k where it reports AVX2, else OpenBLAS (docs/benchmarks.md, "GEMM
// engines", gives the measurements behind the choice).
// MOEGRAD_GEMM=openblas|onednn|onednn_small_k|auto in the environment, read on first use, or set_gemm_engine
// overrides it.
#pragma once
#include <string>
#include <string_view>
#include <vector>

#include "core/cpu/blas_gemm.h"

namespace moegrad::core::cpu {

class GemmEngine {
 public:
  virtual ~GemmEngine() = default;
  virtual const char* name() const = 0;
  // The library and its version, e.g. "oneDNN 2.6.3 (avx512_core)".
  virtual std::string describe() const = 0;
  // One product C = alpha * op(A) @ op(B) + beta * C in moegrad's row-major convention
  // (RowMajorGemm); m, n, k > 0 and sizes within the int range (blas_gemm checks both). With
  // beta == 0, C is written without being read. Called from inside OpenMP parallel regions
  // too, where it must run on the calling thread alone; outside one it may use all threads.
  // Must not throw inside a parallel region: a failure there ends the program with one line.
  virtual void sgemm(const RowMajorGemm& g, float alpha, const float* a, const float* b, float beta,
                     float* c) const = 0;
  // The same product with bf16 operands and f32 accumulation, alpha, beta and C (the mixed
  // precision GEMMs, core/precision.h), under the same rules as sgemm. This default widens op(A)
  // and op(B) to f32 (exact) in per-thread buffers and calls sgemm: any x86-64, the same inputs;
  // oneDNN overrides it with its bf16 GEMM (vdpbf16ps) where the CPU has AVX512_BF16.
  virtual void gemm_bf16(const RowMajorGemm& g, float alpha, const Bf16* a, const Bf16* b, float beta,
                         float* c) const;
  // How gemm_bf16 runs, e.g. "oneDNN gemm_bf16bf16f32 (avx512_core_bf16)".
  virtual std::string describe_bf16() const;
};

// The engine f32 and bf16 -> f32 GEMMs use now.
const GemmEngine& gemm_engine();

// Selects an engine by name ("auto" = the CPU-based default). Throws moegrad::Error naming the
// engine and the available ones when the name is unknown or the engine is not in this build.
// Not to be called while GEMMs run on other threads.
void set_gemm_engine(std::string_view name);

// The engines this build can run: "openblas", then "onednn" and "onednn_small_k" when the build
// found oneDNN.
std::vector<std::string> gemm_engine_names();

// One line for `moegrad info`: the engine in use and why ("onednn (auto: oneDNN has AVX-512
// kernels for this CPU): oneDNN 2.6.3 (avx512_core_bf16)" / "openblas (MOEGRAD_GEMM=openblas): ...").
std::string gemm_engine_summary();
// One line for `moegrad info`: how the bf16 -> f32 GEMMs of --precision bf16 run.
std::string bf16_gemm_summary();

// The oneDNN engine, or nullptr when the build has no oneDNN (gemm_engine_onednn.cpp).
const GemmEngine* onednn_gemm_engine();
// Whether oneDNN would run its AVX-512 kernels on this CPU (false without oneDNN).
bool onednn_has_avx512();
// Whether oneDNN would run its AVX2 (or wider) kernels on this CPU (false without oneDNN).
bool onednn_has_avx2();

}  // namespace moegrad::core::cpu
