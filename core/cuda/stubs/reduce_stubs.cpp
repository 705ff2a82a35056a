// CPU-only build: the CUDA reduction kernels exist and explain that CUDA was not built (no CUDA
// tensor can exist then, so the ops never reach them).
#include "core/cuda/reduce.h"
#include "core/error.h"

namespace moegrad::core::cuda {
namespace {
[[noreturn]] void not_built(const char* op) {
  fail("cuda", "{} on a CUDA tensor: moegrad was built without CUDA", op);
}
}  // namespace

void report_non_finite(const Tensor&, const char* op, const char*) { not_built(op); }
void sum(const ReducePlan&, const Tensor&) { not_built("sum"); }
void mean(const ReducePlan&, const Tensor&) { not_built("mean"); }
void amax(const ReducePlan&, const Tensor&) { not_built("amax"); }
void amin(const ReducePlan&, const Tensor&) { not_built("amin"); }
void logsumexp(const ReducePlan&, const Tensor&) {
  not_built("logsumexp");
}
void norm(const ReducePlan&, double, const Tensor&) {
  not_built("norm");
}
void max(const Tensor&, std::int64_t, const Tensor&, const Tensor&) { not_built("max"); }
void min(const Tensor&, std::int64_t, const Tensor&, const Tensor&) { not_built("min"); }
void argmax(const Tensor&, std::int64_t, const Tensor&) { not_built("argmax"); }
void argmin(const Tensor&, std::int64_t, const Tensor&) { not_built("argmin"); }
void softmax(const Tensor&, std::int64_t, const Tensor&) { not_built("softmax"); }
void log_softmax(const Tensor&, std::int64_t, const Tensor&) { not_built("log_softmax"); }
void softmax_backward(const Tensor&, const Tensor&, std::int64_t, const Tensor&) {
  not_built("softmax_backward");
}
void log_softmax_backward(const Tensor&, const Tensor&, std::int64_t, const Tensor&) {
  not_built("log_softmax_backward");
}
void cumsum(const Tensor&, std::int64_t, bool, bool, const Tensor&) { not_built("cumsum"); }

}  // namespace moegrad::core::cuda
