// Differentiable top-k by coordinate descent (CoLT5-attention's coor_descent/topk, spec §5),
// used by TopNGating(differentiable_topk=True). Plain autograd through the unrolled loop.
#pragma once
#include <cstdint>
#include <optional>

#include "autograd/functions.h"

namespace moegrad::nn::moe {

struct CoorDescentOptions {
  double k_ratio = 9.0 / 8.0;  // coor_descent_k_ratio: k' = min(k * ratio, e)
  std::int64_t n_iters = 20;
  double eps = 0.1;
  std::optional<double> eps_init;
  double eps_decay = 1.0;
};

// scores [..., e] of coordinate descent for a soft top-k' over the last dim:
//   a = eps * (log k' - logsumexp((s + b) / eps)), b = -relu(s + a), repeated n_iters times,
//   scores = exp((s + a + b) / eps), each in (0, 1], summing to about k'.
ag::Variable coor_descent(const ag::Variable& s, double k, const CoorDescentOptions& opt = {});

struct DifferentiableTopk {
  ag::Variable values;  // [..., k] coordinate-descent scores at the top-k indices (differentiable)
  core::Tensor indices; // i64 [..., k] == topk(s, k) indices (the straight-through gates are 1)
};
DifferentiableTopk differentiable_topk(const ag::Variable& s, std::int64_t k, const CoorDescentOptions& opt = {});

}  // namespace moegrad::nn::moe
