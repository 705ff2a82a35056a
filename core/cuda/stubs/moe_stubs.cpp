// CPU-only build: the CUDA MoE kernels exist and explain that CUDA was not built (no CUDA
// tensor can exist then, so the ops layer never reaches them).
#include "core/cuda/moe.h"
#include "core/error.h"

namespace moegrad::core::cuda {
namespace {
[[noreturn]] void not_built(const char* op) {
  fail("cuda", "{} on a CUDA device: moegrad was built without CUDA", op);
}
}  // namespace

bool check_rows(const char* op, const Tensor&, std::int64_t, bool) { not_built(op); }
void assign_slots(const Tensor&, const Tensor&, std::int64_t, std::int64_t, std::int64_t, std::int64_t,
                  const Tensor&, const Tensor&, const Tensor&, const Tensor&) {
  not_built("assign_slots");
}
void dispatch_rows(const Tensor&, const Tensor&, const Tensor&, const Tensor&) {
  not_built("dispatch_rows");
}
void combine_rows(const Tensor&, const Tensor&, const Tensor&, const Tensor&) {
  not_built("combine_rows");
}
void row_dot(const Tensor&, const Tensor&, const Tensor&, const Tensor&) { not_built("row_dot"); }

}  // namespace moegrad::core::cuda
