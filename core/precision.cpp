#include "core/precision.h"

#include "core/error.h"

namespace moegrad::core {
namespace {
thread_local Precision t_gemm_precision = Precision::fp32;
}  // namespace

const char* precision_name(Precision p) { return p == Precision::bf16 ? "bf16" : "fp32"; }

Precision parse_precision(std::string_view name, const char* what) {
  if (name == "fp32") return Precision::fp32;
  if (name == "bf16") return Precision::bf16;
  fail(what, "unknown precision '{}' (expected fp32 or bf16)", name);
}

Precision gemm_precision() { return t_gemm_precision; }
void set_gemm_precision(Precision p) { t_gemm_precision = p; }

}  // namespace moegrad::core
