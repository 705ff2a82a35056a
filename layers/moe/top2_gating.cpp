#include "layers/moe/top2_gating.h"

#include <fmt/ranges.h>

#include <algorithm>

#include "core/precision.h"
#include "layers/check.h"
#include "layers/moe/draws.h"

namespace moegrad::nn::lmoe {

namespace {
void check_policy(const std::string& p, const char* which) {
  MOEGRAD_CHECK(p == "all" || p == "none" || p == "threshold" || p == "random", "Top2Gating",
                "unknown {} '{}': expected 'all', 'none', 'threshold' or 'random'", which, p);
}

// u8 [T]: token t has importance == 1 (first choice routed) / > 0 (second choice routed).
Tensor importance_mask(const Tensor& importance, bool equals_one) {
  return core::to_dtype(equals_one ? core::eq(importance, 1.0) : core::gt(importance, 0.0), core::DType::u8);
}
}  // namespace

Top2Gating::Top2Gating(std::int64_t dim, std::int64_t num_gates, Top2GatingOptions opt, TensorOptions options,
                       core::Generator* gen)
    : dim_(dim), num_gates_(num_gates), opt_(std::move(opt)), gen_(gen) {
  MOEGRAD_CHECK(dim > 0 && num_gates >= 2, "Top2Gating", "need dim > 0 and num_gates >= 2, got {} and {}", dim, num_gates);
  for (auto o : opt_.outer_expert_dims)
    MOEGRAD_CHECK(o > 0, "Top2Gating", "outer_expert_dims must be > 0, got ({})", fmt::join(opt_.outer_expert_dims, ", "));
  check_policy(opt_.second_policy_train, "second_policy_train");
  check_policy(opt_.second_policy_eval, "second_policy_eval");
  MOEGRAD_CHECK(opt_.capacity_factor_train > 0 && opt_.capacity_factor_eval > 0, "Top2Gating",
                "capacity factors must be > 0, got {} and {}", opt_.capacity_factor_train, opt_.capacity_factor_eval);
  Shape w = opt_.outer_expert_dims;
  w.insert(w.end(), {dim, num_gates});
  register_parameter("w_gating", core::randn(w, options, gen));
}

std::int64_t Top2Gating::capacity(std::int64_t n) const {
  if (opt_.dropless) return n;
  const double cf = is_training() ? opt_.capacity_factor_train : opt_.capacity_factor_eval;
  return moe::expert_capacity(n, cf, num_gates_, 4);
}

moe::GateResult Top2Gating::route(const Variable& x, const Tensor& importance, const Tensor& policy_uniform) {
  const char* op = "Top2Gating";
  const Variable& w = parameter("w_gating");
  check_input(op, x, w.value());
  const auto no = static_cast<std::int64_t>(opt_.outer_expert_dims.size());
  bool ok = x.dim() == no + 3 && x.size(-1) == dim_;
  for (std::int64_t i = 0; ok && i < no; ++i) ok = x.size(i) == opt_.outer_expert_dims[i];
  if (!ok)
    fail(op, "input must be [{}{}batch, seq, dim = {}], got {}", fmt::join(opt_.outer_expert_dims, ", "),
         no ? ", " : "", dim_, core::describe(x.value()));
  Shape lead(x.shape().begin(), x.shape().end() - 1);  // [*outer, b, n]
  const std::int64_t n = x.size(-2), e = num_gates_;
  const std::int64_t T = x.numel() / dim_, G = T / n;
  MOEGRAD_CHECK(T > 0, op, "input has no tokens: {}", core::describe(x.value()));
  if (importance.defined() && importance.shape() != lead)
    fail(op, "importance must be {}, got {}", core::shape_str(lead), core::describe(importance));
  const TensorOptions topt{x.dtype(), x.value().device()};

  // logits [*outer, b, n, e]: w [*outer, d, e] broadcasts over b as [*outer, 1, d, e].
  // The router runs FP32 whatever the GEMM precision (core/precision.h).
  Variable logits = [&] {
    const core::GemmPrecisionScope fp32(core::Precision::fp32);
    return ag::matmul(x, no ? ag::unsqueeze(w, no) : w);
  }();
  core::assert_finite(logits.value(), op, "gate logits (the input or w_gating has NaN/Inf)");  // deferred on a GPU
  Variable probs = ag::reshape(ag::softmax(logits, -1), {T, e});

  const Tensor i1 = core::argmax(probs.value(), 1, true);  // [T, 1], ties to the lowest index
  Variable g1 = ag::gather(probs, 1, i1);
  Tensor one_hot1 = core::to_dtype(core::one_hot(core::reshape(i1, {T}), e), x.dtype());  // [T, e]
  Variable proxy = probs;
  Tensor active1, active2;
  if (importance.defined()) {
    const Tensor imp = core::reshape(core::to_device(core::to_dtype(importance, x.dtype()), topt.device), {T, 1});
    const Tensor u = core::to_dtype(core::eq(imp, 1.0), x.dtype());
    one_hot1 = core::mul(one_hot1, u);
    g1 = ag::mul(g1, ag::constant(u));
    proxy = ag::mul(probs, ag::constant(u));
    active1 = importance_mask(core::reshape(imp, {T}), true);
    active2 = importance_mask(core::reshape(imp, {T}), false);
  }
  Variable without_first = ag::mul(probs, ag::constant(core::rsub(one_hot1, 1.0)));
  const Tensor i2 = core::argmax(without_first.value(), 1, true);
  Variable g2 = ag::gather(without_first, 1, i2);
  Variable denom = ag::add(ag::add(g1, g2), opt_.eps);
  Variable gates = ag::cat({ag::div(g1, denom), ag::div(g2, denom)}, 1);  // [T, 2]

  // Second-choice policy, on the normalised second gate.
  const std::string& policy = is_training() ? opt_.second_policy_train : opt_.second_policy_eval;
  const double thr = is_training() ? opt_.second_threshold_train : opt_.second_threshold_eval;
  const TensorOptions mask_opt{core::DType::u8, topt.device};
  Tensor second = core::ones({T}, mask_opt);
  if (policy == "none") {
    second = core::zeros({T}, mask_opt);
  } else if (policy == "threshold") {
    second = core::to_dtype(core::gt(core::select(gates.value(), 1, 1), thr), core::DType::u8);
  } else if (policy == "random") {
    Tensor u = moe::draw_or_take(policy_uniform, lead, "policy_uniform", op, topt, gen_);
    Tensor bound = core::div(core::select(gates.value(), 1, 1), std::max(thr, opt_.eps));
    second = core::to_dtype(core::lt(core::reshape(u, {T}), bound), core::DType::u8);
  }
  if (active2.defined())
    second = core::to_dtype(core::logical_and(core::to_dtype(second, core::DType::b8), core::to_dtype(active2, core::DType::b8)),
                            core::DType::u8);
  Tensor first = active1.defined() ? active1 : core::ones({T}, mask_opt);
  Tensor active = core::stack({first, second}, 1);  // [T, 2] on the input's device

  moe::GateResult out;
  out.routing = moe::route_tokens(core::cat({i1, i2}, 1), active, G, n, e, capacity(n),
                                   core::shape_numel(opt_.outer_expert_dims));
  out.weights = ag::mul(gates, ag::constant(moe::kept_mask(out.routing, x.dtype())));
  out.straight_through = false;
  // loss = mean_{.., b, e}(mean_n(Q) * density_1) * e^2, density_1 before capacity (§7 C3).
  Tensor density = moe::first_choice_density(out.routing, x.dtype(), opt_.density_after_capacity);  // [G, e]
  Variable proxy_mean = ag::mean(ag::reshape(proxy, {G, n, e}), {1});
  out.balance_loss = ag::mul(ag::mean(ag::mul(proxy_mean, ag::constant(density))), static_cast<double>(e * e));
  return out;
}

moe::DenseGateOutput Top2Gating::forward(const Variable& x, const Tensor& importance, const Tensor& policy_uniform) {
  moe::GateResult r = route(x, importance, policy_uniform);
  Shape lead(x.shape().begin(), x.shape().end() - 1);
  return moe::densify(r, lead);
}

std::string Top2Gating::extra_repr() const {
  return fmt::format("dim={}, num_gates={}, outer_expert_dims=({}), second_policy_train='{}', second_policy_eval='{}', "
                     "capacity_factor_train={}, capacity_factor_eval={}{}",
                     dim_, num_gates_, fmt::join(opt_.outer_expert_dims, ", "), opt_.second_policy_train,
                     opt_.second_policy_eval, opt_.capacity_factor_train, opt_.capacity_factor_eval,
                     opt_.dropless ? ", dropless=True" : "");
}

}  // namespace moegrad::nn::lmoe
