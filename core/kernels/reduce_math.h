// Scalar math of the reductions and selections, written once for the CPU kernels
// (core/cpu/reduce.cpp) and the CUDA kernels (core/cuda/reduce.cu, core/cuda/indexing.cu):
// the reduction ops (identity, step = fold one element, combine = merge two partials,
// finalize), the orderings of max/min/topk (NaN ranks as the extreme), and the per-element
// formulas of logsumexp, the softmax family and their backward. Float data accumulates in double.
#pragma once
#include <cmath>
#include <cstdint>
#include <limits>
#include <type_traits>

#include "core/kernels/fast_exp.h"
#include "core/kernels/scalar_math_base.h"

namespace moegrad::core::math {

// Float data accumulates in double; integers in their own type.
template <class T> using AccOf = std::conditional_t<std::is_floating_point_v<T>, double, T>;

template <class T> MOEGRAD_HD bool is_nan(T v) {
  if constexpr (std::is_floating_point_v<T>) return v != v;
  else return false;
}

template <class T> MOEGRAD_HD constexpr T lowest_value() {
  if constexpr (std::is_floating_point_v<T>) return -std::numeric_limits<T>::infinity();
  else return std::numeric_limits<T>::lowest();
}
template <class T> MOEGRAD_HD constexpr T highest_value() {
  if constexpr (std::is_floating_point_v<T>) return std::numeric_limits<T>::infinity();
  else return std::numeric_limits<T>::max();
}

// ---- reduction ops: identity, step (fold one element), combine (two partials), finalize ----

template <class T> struct SumOp {
  using In = T;
  using Acc = AccOf<T>;
  using Out = T;
  MOEGRAD_HD Acc identity() const { return Acc(0); }
  MOEGRAD_HD Acc step(Acc a, T v) const { return a + static_cast<Acc>(v); }
  MOEGRAD_HD Acc combine(Acc a, Acc b) const { return a + b; }
  MOEGRAD_HD Out finalize(Acc a, std::int64_t) const { return static_cast<Out>(a); }
};

template <class T> struct MeanOp : SumOp<T> {
  using Acc = typename SumOp<T>::Acc;
  MOEGRAD_HD T finalize(Acc a, std::int64_t n) const {
    return static_cast<T>(a / static_cast<double>(n));
  }
};

// NaN propagates: once the accumulator is NaN no comparison replaces it.
template <class T> struct MaxOp {
  using In = T;
  using Acc = T;
  using Out = T;
  MOEGRAD_HD Acc identity() const { return lowest_value<T>(); }
  MOEGRAD_HD Acc step(Acc a, T v) const { return ((v > a) | is_nan(v)) ? v : a; }
  MOEGRAD_HD Acc combine(Acc a, Acc b) const { return step(a, b); }
  MOEGRAD_HD Out finalize(Acc a, std::int64_t) const { return a; }
};

template <class T> struct MinOp {
  using In = T;
  using Acc = T;
  using Out = T;
  MOEGRAD_HD Acc identity() const { return highest_value<T>(); }
  MOEGRAD_HD Acc step(Acc a, T v) const { return ((v < a) | is_nan(v)) ? v : a; }
  MOEGRAD_HD Acc combine(Acc a, Acc b) const { return step(a, b); }
  MOEGRAD_HD Out finalize(Acc a, std::int64_t) const { return a; }
};

template <class T> struct Norm2Op : SumOp<T> {
  using Acc = double;
  MOEGRAD_HD Acc step(Acc a, T v) const {
    return a + static_cast<double>(v) * static_cast<double>(v);
  }
  MOEGRAD_HD T finalize(Acc a, std::int64_t) const { return static_cast<T>(std::sqrt(a)); }
};

template <class T> struct Norm1Op : SumOp<T> {
  using Acc = double;
  MOEGRAD_HD Acc step(Acc a, T v) const { return a + std::fabs(static_cast<double>(v)); }
};

template <class T> struct NormPOp : SumOp<T> {
  using Acc = double;
  double p = 2.0;
  MOEGRAD_HD Acc step(Acc a, T v) const {
    return a + std::pow(std::fabs(static_cast<double>(v)), p);
  }
  MOEGRAD_HD T finalize(Acc a, std::int64_t) const {
    return static_cast<T>(std::pow(a, 1.0 / p));
  }
};

template <class T> struct NormInfOp {
  using In = T;
  using Acc = T;
  using Out = T;
  MOEGRAD_HD Acc identity() const { return T(0); }
  MOEGRAD_HD Acc step(Acc a, T v) const {
    const T m = std::fabs(v);
    return ((m > a) | is_nan(m)) ? m : a;
  }
  MOEGRAD_HD Acc combine(Acc a, Acc b) const { return ((b > a) | is_nan(b)) ? b : a; }
  MOEGRAD_HD Out finalize(Acc a, std::int64_t) const { return a; }
};

// ---- orderings ----

// max/min with an index: v replaces the current extreme cur (NaN counts as the extreme; the
// first NaN wins). Walking a line in order with this test keeps the first extreme.
template <bool IsMax, class T> MOEGRAD_HD bool extreme_better(T v, T cur) {
  if constexpr (IsMax) return (v > cur) | (is_nan(v) & !is_nan(cur));
  else return (v < cur) | (is_nan(v) & !is_nan(cur));
}

// topk: a ranks before b. NaN counts as larger than every number (as in PyTorch); equal values
// (and NaNs) are tied, broken by the lowest index by the callers.
template <class T> MOEGRAD_HD bool topk_better(T a, T b, bool largest) {
  if constexpr (std::is_floating_point_v<T>) {
    if (largest) return a > b || (is_nan(a) && !is_nan(b));
    return a < b || (is_nan(b) && !is_nan(a));
  } else {
    return largest ? a > b : a < b;
  }
}

// ---- logsumexp and the softmax family ----

// logsumexp's shift: the max, or 0 when it is infinite (all -inf gives -inf, +inf stays +inf).
template <class T> MOEGRAD_HD T lse_shift(T m) { return std::isfinite(m) ? m : T(0); }
// log(sum of exp(x - shift)) + shift, from the double sum.
template <class T> MOEGRAD_HD T lse_finish(double s, T shift) {
  return static_cast<T>(std::log(s) + shift);
}

// softmax: e = exp(x - max) and out = e * (1 / sum e); log_softmax: out = (x - max) - log(sum e).
template <class T> MOEGRAD_HD T softmax_exp(T x, T m) { return fast_exp(x - m); }
template <class T> MOEGRAD_HD T softmax_scale(double s) { return static_cast<T>(1.0 / s); }
template <class T> MOEGRAD_HD T log_softmax_norm(double s) { return static_cast<T>(std::log(s)); }
template <class T> MOEGRAD_HD T log_softmax_out(T x, T m, T log_sum) { return (x - m) - log_sum; }

// Backward: s = sum over the line of term(gy, y) (in double, then rounded to T);
// softmax: dx = y * (gy - s) with s = sum(gy * y); log_softmax: dx = gy - exp(y) * s, s = sum(gy).
template <bool Log, class T> MOEGRAD_HD double softmax_backward_term(T g, T y) {
  if constexpr (Log) return static_cast<double>(g);
  else return static_cast<double>(g) * static_cast<double>(y);
}
template <bool Log, class T> MOEGRAD_HD T softmax_backward_out(T g, T y, T s) {
  if constexpr (Log) return g - fast_exp(y) * s;
  else return y * (g - s);
}

}  // namespace moegrad::core::math
