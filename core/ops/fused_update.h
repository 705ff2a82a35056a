// Fused in-place updates for the optimizers (optim/): one elementwise pass per parameter on
// the parameter's device (FusedUpdateKernels, core/kernels/fused_update.h: an OpenMP loop on the
// CPU, one kernel on CUDA), applying a functor of core/kernels/fused_update_math.h. Nothing is
// recorded by autograd; the tensors are modified in place.
//
// The caller fills the functor in double (its coefficients computed on the host, as PyTorch's
// Python code computes them); each op casts them to the parameter's dtype once and runs the
// element math in that dtype. Every tensor must be defined, floating (f32/f64), contiguous,
// and share the parameter's dtype, shape and device; otherwise the op throws naming itself:
//   [adam_update_] exp_avg f32(2, 3) does not match param f32(3, 2)
#pragma once
#include "core/kernels/fused_update_math.h"
#include "core/tensor.h"

namespace moegrad::core {

// SGD: param updated from grad; momentum_buffer undefined = no momentum (else updated too).
void sgd_update_(const Tensor& param, const Tensor& grad, const Tensor& momentum_buffer,
                 const optim_math::SgdStep<double>& step);
// Adam/AdamW: param, exp_avg and exp_avg_sq updated; max_exp_avg_sq undefined unless amsgrad.
void adam_update_(const Tensor& param, const Tensor& grad, const Tensor& exp_avg, const Tensor& exp_avg_sq,
                  const Tensor& max_exp_avg_sq, const optim_math::AdamStep<double>& step);
// Gradient clipping: grad = grad * coef (coef cast to grad's dtype), and
// grad = clamp(grad, lo, hi) (NaN stays NaN).
void grad_scale_(const Tensor& grad, double coef);
void grad_clamp_(const Tensor& grad, double lo, double hi);

}  // namespace moegrad::core
