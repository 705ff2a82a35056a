// The CPU's FusedUpdateKernels tables (core/kernels/fused_update.h): one pass over contiguous
// buffers of n elements, calling f(ptrs[i]...) per element (a functor of
// core/kernels/fused_update_math.h), OpenMP-parallel above kParallelGrain elements like
// core/cpu/loops.h. Elements are independent, so the result does not depend on the thread
// count. The device index is unused.
#include <cstdint>

#include "core/cpu/loops.h"
#include "core/kernels/fused_update.h"

namespace moegrad::core::cpu {
namespace {

template <class F, class... P>
void for_each_element(std::int64_t n, const F& f, P*... ptrs) {
  const int nthreads = threads_for(n);
#pragma omp parallel for simd num_threads(nthreads) if (nthreads > 1) schedule(static)
  for (std::int64_t i = 0; i < n; ++i) f(ptrs[i]...);
}

template <class T>
void sgd(int, std::int64_t n, const optim_math::SgdStep<T>& f, T* param, T* grad, T* momentum) {
  if (momentum)
    for_each_element(n, f, param, grad, momentum);
  else
    for_each_element(n, f, param, grad);
}

template <class T>
void adam(int, std::int64_t n, const optim_math::AdamStep<T>& f, T* param, T* grad, T* exp_avg, T* exp_avg_sq,
          T* max_exp_avg_sq) {
  if (max_exp_avg_sq)
    for_each_element(n, f, param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq);
  else
    for_each_element(n, f, param, grad, exp_avg, exp_avg_sq);
}

template <class T> void scale(int, std::int64_t n, const optim_math::Scale<T>& f, T* grad) {
  for_each_element(n, f, grad);
}
template <class T> void clamp(int, std::int64_t n, const optim_math::ClampValue<T>& f, T* grad) {
  for_each_element(n, f, grad);
}

}  // namespace
}  // namespace moegrad::core::cpu

namespace moegrad::core {

template <class T>
const FusedUpdateKernels<T> FusedUpdateKernels<T>::cpu = {&cpu::sgd<T>, &cpu::adam<T>, &cpu::scale<T>, &cpu::clamp<T>};
template const FusedUpdateKernels<float> FusedUpdateKernels<float>::cpu;
template const FusedUpdateKernels<double> FusedUpdateKernels<double>::cpu;

}  // namespace moegrad::core
