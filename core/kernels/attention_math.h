// The scalar math of causal attention, shared by the CPU kernel (core/cpu/attention.cpp) and the
// CUDA kernel (core/cuda/attention.cu), so both devices compute the same softmax:
//   forward:  row statistics (max m, sum l of exp(s - m)) combined chunk by chunk of keys (the
//             online softmax), out = (sum_s exp(s - m) v_s) / l, lse = m + log l;
//   backward: p = exp(s - lse) (the probabilities recomputed from the saved lse),
//             dS = p (dP - D) with D = rowsum(dO * O).
// Scores are s = scale * q_t . k_s for keys s <= t (causal); later keys never enter a row.
#pragma once
#include <cmath>

#include "core/kernels/fast_exp.h"
#include "core/kernels/scalar_math_base.h"

namespace moegrad::core::attention_math {

// Keys [0, key_end(t)) are visible to query row t (causal, the row's own position included).
MOEGRAD_HD long long key_end(long long t) { return t + 1; }

// A softmax row's running statistics: max of the scores seen so far and the sum of
// exp(score - max). An empty row has max = -inf and sum = 0.
template <class T> struct RowStats {
  T max;
  T sum;
};

template <class T> MOEGRAD_HD RowStats<T> empty_row() { return {-INFINITY, T(0)}; }

// exp(old_max - new_max): the factor that moves sums (and output accumulators) taken under
// old_max onto new_max; 0 for an empty row (old_max = -inf), never exp(-inf - -inf) = NaN.
template <class T> MOEGRAD_HD T rescale(T old_max, T new_max) {
  return old_max == -INFINITY ? T(0) : math::fast_exp(old_max - new_max);
}

// The statistics of a row that saw a's scores and then a chunk whose max is chunk_max and
// whose exp(score - chunk_max) sum to chunk_sum (the online-softmax combine).
template <class T> MOEGRAD_HD RowStats<T> combine(RowStats<T> a, T chunk_max, T chunk_sum) {
  const T m = a.max > chunk_max ? a.max : chunk_max;
  return {m, a.sum * rescale(a.max, m) + chunk_sum * rescale(chunk_max, m)};
}

// log sum_s exp(score_s): what the backward needs to recompute each probability.
template <class T> MOEGRAD_HD T log_sum_exp(RowStats<T> r) {
#ifdef __CUDA_ARCH__
  return r.max + log(r.sum);
#else
  return r.max + std::log(r.sum);
#endif
}

// The probability of a visible key, recomputed from its score and the row's log-sum-exp.
template <class T> MOEGRAD_HD T probability(T score, T lse) { return math::fast_exp(score - lse); }

// d loss / d score (before the scale): p (dP - D), dP = dO . v_s, D = rowsum(dO * O).
template <class T> MOEGRAD_HD T score_grad(T p, T dp, T delta) { return p * (dp - delta); }

}  // namespace moegrad::core::attention_math
