// The fused in-place optimizer updates, declared once for every backend per dtype T
// (core/cpu/fused_update.cpp, core/cuda/fused_update.cu; reached through
// backend<FusedUpdateKernels<T>>, core/backend.h). One pass over contiguous buffers of n
// elements on `device`, applying the functor of core/kernels/fused_update_math.h to each element
// (the CPU OpenMP-parallel above kParallelGrain, CUDA one grid-stride kernel on the device's
// stream). The ops (core/ops/fused_update.cpp) have validated devices, dtypes and shapes.
#pragma once
#include <cstdint>

#include "core/kernels/fused_update_math.h"

namespace moegrad::core {

template <class T>
struct FusedUpdateKernels {
  // momentum: nullptr for SGD without momentum.
  void (*sgd)(int device, std::int64_t n, const optim_math::SgdStep<T>& f, T* param, T* grad, T* momentum);
  // max_exp_avg_sq: nullptr unless amsgrad.
  void (*adam)(int device, std::int64_t n, const optim_math::AdamStep<T>& f, T* param, T* grad, T* exp_avg,
               T* exp_avg_sq, T* max_exp_avg_sq);
  void (*scale)(int device, std::int64_t n, const optim_math::Scale<T>& f, T* grad);
  void (*clamp)(int device, std::int64_t n, const optim_math::ClampValue<T>& f, T* grad);

  static const FusedUpdateKernels cpu;   // core/cpu/fused_update.cpp (f32, f64)
  static const FusedUpdateKernels cuda;  // core/cuda/fused_update.cu (f32, f64; CUDA builds only)
};

}  // namespace moegrad::core
