// The CUDA kernels behind the fused in-place updates of core/ops/fused_update.h: one
// elementwise kernel per call, a grid-stride loop applying the functor of
// core/kernels/fused_update_math.h to contiguous device buffers of n elements, on the device's stream
// (asynchronous, like every kernel). Defined and instantiated for float and double in
// core/cuda/fused_update.cu; in a CPU-only build core/cuda/stubs/fused_update_stubs.cpp
// defines them to throw. Callers (the ops) have validated devices, dtypes and shapes.
#pragma once
#include <cstdint>

#include "core/kernels/fused_update_math.h"

namespace moegrad::core::cuda {

// momentum: nullptr for SGD without momentum.
template <class T>
void sgd_update(int device, std::int64_t n, const optim_math::SgdStep<T>& f, T* param, T* grad, T* momentum);
// max_exp_avg_sq: nullptr unless amsgrad.
template <class T>
void adam_update(int device, std::int64_t n, const optim_math::AdamStep<T>& f, T* param, T* grad, T* exp_avg,
                 T* exp_avg_sq, T* max_exp_avg_sq);
template <class T> void grad_scale(int device, std::int64_t n, const optim_math::Scale<T>& f, T* grad);
template <class T> void grad_clamp(int device, std::int64_t n, const optim_math::ClampValue<T>& f, T* grad);

}  // namespace moegrad::core::cuda
