// The fused update kernels (core/cuda/fused_update.h): one grid-stride elementwise kernel per
// parameter, applying the same functors as the CPU loop (core/kernels/fused_update_math.h).
#include "core/cuda/fused_update.h"
#include "core/cuda/launch.cuh"

namespace moegrad::core::cuda {
namespace {

template <class F, class... P>
__global__ void for_each_element_kernel(std::int64_t n, F f, P*... ptrs) {
  MOEGRAD_GRID_STRIDE(i, n) { f(ptrs[i]...); }
}

template <class F, class... P>
void launch(const char* op, int device, std::int64_t n, const F& f, P*... ptrs) {
  if (n <= 0) return;
  cudaStream_t st = stream(device);
  for_each_element_kernel<F, P...><<<blocks_for(n), kThreads, 0, st>>>(n, f, ptrs...);
  MOEGRAD_CUDA_CHECK_LAUNCH(op);
}

}  // namespace

template <class T>
void sgd_update(int device, std::int64_t n, const optim_math::SgdStep<T>& f, T* param, T* grad, T* momentum) {
  if (momentum)
    launch("sgd_update_", device, n, f, param, grad, momentum);
  else
    launch("sgd_update_", device, n, f, param, grad);
}

template <class T>
void adam_update(int device, std::int64_t n, const optim_math::AdamStep<T>& f, T* param, T* grad, T* exp_avg,
                 T* exp_avg_sq, T* max_exp_avg_sq) {
  if (max_exp_avg_sq)
    launch("adam_update_", device, n, f, param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq);
  else
    launch("adam_update_", device, n, f, param, grad, exp_avg, exp_avg_sq);
}

template <class T> void grad_scale(int device, std::int64_t n, const optim_math::Scale<T>& f, T* grad) {
  launch("grad_scale_", device, n, f, grad);
}

template <class T> void grad_clamp(int device, std::int64_t n, const optim_math::ClampValue<T>& f, T* grad) {
  launch("grad_clamp_", device, n, f, grad);
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
