// The compute precision of f32 GEMMs (issue 16, bf16 mixed precision). Parameters, optimizer
// state, activations and every non-GEMM op stay f32; under Precision::bf16 the two places that
// issue GEMMs (matmul / matmul_into in core/ops/linalg.cpp, the grouped expert GEMMs in
// core/ops/moe.cpp) round their f32 operands to bf16 (nearest even) and run the mixed kernel:
// bf16 inputs, f32 accumulation and output (GemmKernels<Bf16, float>). f64 GEMMs are unaffected.
// The setting is per thread; autograd records the precision in effect at forward time, so the
// backward GEMMs of a node use it too.
#pragma once
#include <string_view>

namespace moegrad::core {

enum class Precision { fp32, bf16 };

// "fp32" / "bf16".
const char* precision_name(Precision p);
// Parses "fp32" / "bf16"; anything else throws "[<what>] unknown precision 'fp16' (expected fp32 or bf16)".
Precision parse_precision(std::string_view name, const char* what);

Precision gemm_precision();  // this thread's; fp32 unless set
void set_gemm_precision(Precision p);

// Sets this thread's GEMM precision for a scope and restores the previous one (the routers run
// their gate logits under GemmPrecisionScope(Precision::fp32)).
class GemmPrecisionScope {
 public:
  explicit GemmPrecisionScope(Precision p) : previous_(gemm_precision()) { set_gemm_precision(p); }
  ~GemmPrecisionScope() { set_gemm_precision(previous_); }
  GemmPrecisionScope(const GemmPrecisionScope&) = delete;
  GemmPrecisionScope& operator=(const GemmPrecisionScope&) = delete;

 private:
  Precision previous_;
};

}  // namespace moegrad::core
