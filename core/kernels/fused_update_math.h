// The per-element math of the optimizer updates and of gradient clipping, written once as
// MOEGRAD_HD functors shared by the CPU loop (core/cpu/fused_update.cpp) and the CUDA kernels
// (core/cuda/fused_update.cu); the ops of core/ops/fused_update.h run them in place. Each
// functor updates one element: the parameter (and its state) by reference, the gradient by
// value.
//
// The caller (optim/) computes the scalar coefficients once per step in double, as PyTorch's
// Python code does, and fills the <double> functor; the op casts every coefficient to the
// parameter's type T once (as<T>()), as PyTorch's kernels do with their Scalar arguments, and
// the element math then runs in T in the order of PyTorch 1.13's single-tensor (foreach=False)
// update. The tests match it bit for bit against PyTorch fixtures on the CPU: change nothing
// here without regenerating them.
#pragma once
#include <cmath>

#include "core/kernels/scalar_math_base.h"

namespace moegrad::core::optim_math {

// torch.optim.SGD (_single_tensor_sgd):
//   d = maximize ? -g : g;  d = d + weight_decay * p            (if weight_decay != 0)
//   buf = first ? d : buf * momentum + (1 - dampening) * d     (with momentum)
//   d = nesterov ? d + momentum * buf : buf
//   p = p + (-lr) * d
template <class T> struct SgdStep {
  T neg_lr;
  T weight_decay;
  T momentum;
  T one_minus_dampening;
  bool use_weight_decay;  // weight_decay != 0
  bool nesterov;
  bool maximize;
  bool first;  // the momentum buffer does not exist yet: it becomes a copy of d

  // The same step with every coefficient cast to U.
  template <class U> SgdStep<U> as() const {
    return {static_cast<U>(neg_lr), static_cast<U>(weight_decay), static_cast<U>(momentum),
            static_cast<U>(one_minus_dampening), use_weight_decay, nesterov, maximize, first};
  }

  MOEGRAD_HD T direction(T p, T g) const {
    T d = maximize ? -g : g;
    if (use_weight_decay) d = d + weight_decay * p;
    return d;
  }
  // Without momentum (no state).
  MOEGRAD_HD void operator()(T& p, T g) const { p = p + neg_lr * direction(p, g); }
  // With a momentum buffer.
  MOEGRAD_HD void operator()(T& p, T g, T& buf) const {
    T d = direction(p, g);
    buf = first ? d : buf * momentum + one_minus_dampening * d;
    d = nesterov ? d + momentum * buf : buf;
    p = p + neg_lr * d;
  }
};

// torch.optim.Adam and AdamW (_single_tensor_adam / _single_tensor_adamw), step t >= 1:
//   g = maximize ? -g : g
//   AdamW: p = p * (1 - lr * weight_decay)          Adam: g = g + weight_decay * p (if != 0)
//   m = m * beta1 + (1 - beta1) * g
//   v = v * beta2 + (1 - beta2) * g * g
//   amsgrad: vmax = maximum(vmax, v)  (NaN-propagating, like torch.maximum)
//   denom = sqrt(amsgrad ? vmax : v) / sqrt(1 - beta2^t) + eps
//   p = p + (-lr / (1 - beta1^t)) * m / denom
template <class T> struct AdamStep {
  T beta1;
  T one_minus_beta1;
  T beta2;
  T one_minus_beta2;
  T bias_correction2_sqrt;  // sqrt(1 - beta2^t)
  T eps;
  T neg_step_size;  // -lr / (1 - beta1^t)
  T weight_decay;   // Adam's L2 term
  T decay_factor;   // AdamW's 1 - lr * weight_decay
  bool l2;          // Adam with weight_decay != 0
  bool decoupled;   // AdamW
  bool maximize;

  template <class U> AdamStep<U> as() const {
    return {static_cast<U>(beta1),        static_cast<U>(one_minus_beta1),
            static_cast<U>(beta2),        static_cast<U>(one_minus_beta2),
            static_cast<U>(bias_correction2_sqrt), static_cast<U>(eps),
            static_cast<U>(neg_step_size), static_cast<U>(weight_decay),
            static_cast<U>(decay_factor), l2,
            decoupled,                    maximize};
  }

  // Updates p (AdamW's decay only), m and v.
  MOEGRAD_HD void moments(T& p, T g, T& m, T& v) const {
    if (maximize) g = -g;
    if (decoupled) {
      p = p * decay_factor;
    } else if (l2) {
      g = g + weight_decay * p;
    }
    m = m * beta1 + one_minus_beta1 * g;
    v = v * beta2 + one_minus_beta2 * g * g;  // addcmul_: v + (value * g) * g
  }
  MOEGRAD_HD void apply(T& p, T m, T second_moment) const {
    const T denom = std::sqrt(second_moment) / bias_correction2_sqrt + eps;
    p = p + neg_step_size * m / denom;  // addcdiv_: p + (value * m) / denom
  }
  MOEGRAD_HD void operator()(T& p, T g, T& m, T& v) const {
    moments(p, g, m, v);
    apply(p, m, v);
  }
  MOEGRAD_HD void operator()(T& p, T g, T& m, T& v, T& vmax) const {
    moments(p, g, m, v);
    vmax = (vmax != vmax || vmax > v) ? vmax : v;  // torch.maximum: NaN wins
    apply(p, m, vmax);
  }
};

// clip_grad_norm: g = g * coef.
template <class T> struct Scale {
  T coef;
  MOEGRAD_HD void operator()(T& g) const { g = g * coef; }
};

// clip_grad_value: g = clamp(g, lo, hi); NaN stays NaN, like torch.clamp.
template <class T> struct ClampValue {
  T lo, hi;
  MOEGRAD_HD void operator()(T& g) const { g = g < lo ? lo : (g > hi ? hi : g); }
};

}  // namespace moegrad::core::optim_math
