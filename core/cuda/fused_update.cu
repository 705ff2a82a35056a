// The CUDA FusedUpdateKernels tables (core/kernels/fused_update.h): one grid-stride elementwise
// kernel per parameter, applying the same functors as the CPU loop
// (core/kernels/fused_update_math.h).
#include "core/cuda/launch.cuh"
#include "core/kernels/fused_update.h"

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

}  // namespace moegrad::core::cuda

namespace moegrad::core {

template <class T>
const FusedUpdateKernels<T> FusedUpdateKernels<T>::cuda = {&cuda::sgd_update<T>, &cuda::adam_update<T>,
                                                           &cuda::grad_scale<T>, &cuda::grad_clamp<T>};
template const FusedUpdateKernels<float> FusedUpdateKernels<float>::cuda;
template const FusedUpdateKernels<double> FusedUpdateKernels<double>::cuda;

}  // namespace moegrad::core
