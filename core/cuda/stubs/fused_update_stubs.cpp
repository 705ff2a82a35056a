// CPU-only build: the fused update kernels exist and explain that CUDA was not built (no CUDA
// tensor can exist then, so the ops never reach them).
#include "core/cuda/fused_update.h"
#include "core/error.h"

namespace moegrad::core::cuda {
namespace {
[[noreturn]] void not_built(const char* op, int device) {
  fail(op, "kernel on cuda:{}: moegrad was built without CUDA", device);
}
}  // namespace

template <class T>
void sgd_update(int device, std::int64_t, const optim_math::SgdStep<T>&, T*, T*, T*) {
  not_built("sgd_update_", device);
}
template <class T>
void adam_update(int device, std::int64_t, const optim_math::AdamStep<T>&, T*, T*, T*, T*, T*) {
  not_built("adam_update_", device);
}
template <class T> void grad_scale(int device, std::int64_t, const optim_math::Scale<T>&, T*) {
  not_built("grad_scale_", device);
}
template <class T> void grad_clamp(int device, std::int64_t, const optim_math::ClampValue<T>&, T*) {
  not_built("grad_clamp_", device);
}

#define MOEGRAD_FUSED_UPDATE(T)                                                                              \
  template void sgd_update<T>(int, std::int64_t, const optim_math::SgdStep<T>&, T*, T*, T*);                 \
  template void adam_update<T>(int, std::int64_t, const optim_math::AdamStep<T>&, T*, T*, T*, T*, T*);       \
  template void grad_scale<T>(int, std::int64_t, const optim_math::Scale<T>&, T*);                           \
  template void grad_clamp<T>(int, std::int64_t, const optim_math::ClampValue<T>&, T*);
MOEGRAD_FUSED_UPDATE(float)
MOEGRAD_FUSED_UPDATE(double)
#undef MOEGRAD_FUSED_UPDATE

}  // namespace moegrad::core::cuda
