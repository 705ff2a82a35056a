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
#pragma omp parallel num_threads(nthreads) if (nthreads > 1)
  {
    const std::int64_t t = omp_get_thread_num(), parts = omp_get_num_threads();
    const std::int64_t i0 = n * t / parts, i1 = n * (t + 1) / parts;
    call_vectorised([&]() MOEGRAD_VECTOR_BODY {  // baseline or AVX2 build (core/cpu/vector_isa.h)
      // A local copy: the stores through ptrs could alias f's members as far as the compiler
      // knows, which would reload them per element and keep the loop scalar.
      const F local = f;
#pragma omp simd
      for (std::int64_t i = i0; i < i1; ++i) local(ptrs[i]...);
    });
  }
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
