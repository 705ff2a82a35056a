// CPU-only build: the CUDA attention kernels exist and explain that CUDA was not built (no CUDA
// tensor can exist then, so the ops layer never reaches them).
#include "core/cuda/attention.h"
#include "core/error.h"

namespace moegrad::core::cuda {

void causal_attention_forward(const Tensor&, const Tensor&, const Tensor&, double, const Tensor&, const Tensor&) {
  fail("cuda", "causal_attention on a CUDA device: moegrad was built without CUDA");
}
void causal_attention_backward(const Tensor&, const Tensor&, const Tensor&, const Tensor&, const Tensor&,
                               const Tensor&, double, const Tensor&, const Tensor&, const Tensor&) {
  fail("cuda", "causal_attention on a CUDA device: moegrad was built without CUDA");
}

}  // namespace moegrad::core::cuda
