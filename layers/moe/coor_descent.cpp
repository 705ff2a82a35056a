#include "layers/moe/coor_descent.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"
#include "core/ops.h"

namespace moegrad::nn::moe {

ag::Variable coor_descent(const ag::Variable& s, double k, const CoorDescentOptions& opt) {
  MOEGRAD_CHECK(opt.n_iters > 0, "coor_descent", "n_iters must be > 0, got {}", opt.n_iters);
  MOEGRAD_CHECK(k > 0.0 && opt.eps > 0.0, "coor_descent", "k and eps must be > 0, got {} and {}", k, opt.eps);
  // logk = log(clamp(k, 1e-20)) on a tensor of s's dtype, as CoLT5 builds it.
  const core::Tensor logk = core::log(core::clamp(core::full({1}, k, {s.dtype(), s.value().device()}), 1e-20, INFINITY));
  double eps = std::max(opt.eps_init.value_or(opt.eps), opt.eps);
  ag::Variable a;
  ag::Variable b = ag::neg(s);
  for (std::int64_t it = 0; it < opt.n_iters; ++it) {
    ag::Variable sb = ag::div(ag::add(s, b), eps);
    a = ag::mul(ag::sub(ag::constant(logk), ag::logsumexp(sb, {-1}, true)), eps);
    b = ag::neg(ag::relu(ag::add(s, a)));
    eps = std::max(eps * opt.eps_decay, opt.eps);
  }
  return ag::exp(ag::div(ag::add(ag::add(s, a), b), eps));
}

DifferentiableTopk differentiable_topk(const ag::Variable& s, std::int64_t k, const CoorDescentOptions& opt) {
  MOEGRAD_CHECK(opt.k_ratio >= 1.0, "differentiable_topk", "k_ratio must be >= 1, got {}", opt.k_ratio);
  const double kk = std::min(static_cast<double>(k) * opt.k_ratio, static_cast<double>(s.size(-1)));
  ag::Variable scores = coor_descent(s, kk, opt);
  // The original takes topk(s * (y + (1 - y).detach())); the gates are exactly 1 in value, so
  // the indices are those of s.
  core::ValuesIndices top = core::topk(s.value(), k, -1, true);
  return {ag::gather(scores, -1, top.indices), top.indices};
}

}  // namespace moegrad::nn::moe
