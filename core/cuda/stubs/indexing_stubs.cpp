// CPU-only build: the CUDA indexing kernels exist and explain that CUDA was not built (no CUDA
// tensor can exist then, so the ops never reach them).
#include "core/cuda/indexing.h"
#include "core/error.h"

namespace moegrad::core::cuda {
namespace {
[[noreturn]] void not_built(const char* op) {
  fail("cuda", "{} on a CUDA tensor: moegrad was built without CUDA", op);
}
}  // namespace

void topk(const Tensor&, std::int64_t, std::int64_t, bool, const Tensor&, const Tensor&) {
  not_built("topk");
}
void one_hot(const Tensor&, const Tensor&) { not_built("one_hot"); }
void gather(const Tensor&, std::int64_t, const Tensor&, const Tensor&) { not_built("gather"); }
void scatter(const Tensor&, std::int64_t, const Tensor&, const Tensor&) { not_built("scatter"); }
void scatter_add(const Tensor&, std::int64_t, const Tensor&, const Tensor&) {
  not_built("scatter_add");
}
void index_select(const Tensor&, std::int64_t, const Tensor&, const Tensor&) {
  not_built("index_select");
}
void index_add(const Tensor&, std::int64_t, const Tensor&, const Tensor&) {
  not_built("index_add");
}

}  // namespace moegrad::core::cuda
