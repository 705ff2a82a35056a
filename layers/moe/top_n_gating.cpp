#include "layers/moe/top_n_gating.h"

#include <fmt/ranges.h>

#include <algorithm>
#include <cmath>

#include "core/precision.h"
#include "layers/check.h"
#include "layers/moe/draws.h"

namespace moegrad::nn::st {

namespace {
// [eps, t_2, ..., t_k] like the original's threshold buffers.
Tensor threshold_buffer(const std::vector<double>& given, std::int64_t top_n, double eps, const char* which,
                        TensorOptions options) {
  const auto want = static_cast<std::size_t>(top_n - 1);
  MOEGRAD_CHECK(given.size() == 1 || given.size() == want, "TopNGating",
                "{} needs 1 value or top_n - 1 = {} values, got {} ({})", which, want, given.size(), fmt::join(given, ", "));
  std::vector<double> v{eps};
  for (std::size_t i = 0; i < want; ++i) v.push_back(given.size() == 1 ? given[0] : given[i]);
  return core::to_dtype(core::from_vector<double>(v, {top_n}), options.dtype);
}
}  // namespace

TopNGating::TopNGating(std::int64_t dim, std::int64_t num_gates, TopNGatingOptions opt, TensorOptions options,
                       core::Generator* gen)
    : dim_(dim), num_gates_(num_gates), opt_(std::move(opt)), gen_(gen) {
  MOEGRAD_CHECK(dim > 0 && num_gates > 0, "TopNGating", "dim and num_gates must be > 0, got {} and {}", dim, num_gates);
  MOEGRAD_CHECK(opt_.top_n >= 1 && opt_.top_n <= num_gates, "TopNGating", "top_n must be in [1, num_gates = {}], got {}",
                num_gates, opt_.top_n);
  MOEGRAD_CHECK(opt_.min_expert_capacity >= 1, "TopNGating", "min_expert_capacity must be >= 1, got {}",
                opt_.min_expert_capacity);
  MOEGRAD_CHECK(opt_.capacity_factor_train > 0 && opt_.capacity_factor_eval > 0, "TopNGating",
                "capacity factors must be > 0, got {} and {}", opt_.capacity_factor_train, opt_.capacity_factor_eval);
  to_gates_ = register_module("to_gates", std::make_shared<Linear>(dim, num_gates, false, options, gen));
  register_buffer("threshold_train", threshold_buffer(opt_.threshold_train, opt_.top_n, opt_.eps, "threshold_train", options));
  register_buffer("threshold_eval", threshold_buffer(opt_.threshold_eval, opt_.top_n, opt_.eps, "threshold_eval", options));
  register_buffer("zero", core::zeros({1}, options), /*persistent=*/false);
}

std::int64_t TopNGating::capacity(std::int64_t n) const {
  if (opt_.dropless) return n;
  const double cf = is_training() ? opt_.capacity_factor_train : opt_.capacity_factor_eval;
  return moe::expert_capacity(n, cf, num_gates_, opt_.min_expert_capacity);
}

moe::GateResult TopNGating::route(const Variable& x, bool noise_gates, double noise_mult, const moe::Draws& draws) {
  const char* op = "TopNGating";
  check_input(op, x, to_gates_->weight().value());
  if (x.dim() != 3 || x.size(-1) != dim_)
    fail(op, "input must be [batch, seq, dim = {}], got {}", dim_, core::describe(x.value()));
  const std::int64_t b = x.size(0), n = x.size(1), e = num_gates_, k = opt_.top_n;
  MOEGRAD_CHECK(n > 0 && b > 0, op, "input has no tokens: {}", core::describe(x.value()));
  const TensorOptions topt{x.dtype(), x.value().device()};

  // The router runs FP32 whatever the GEMM precision (core/precision.h): logits, softmax, top-k.
  Variable logits = [&] {
    const core::GemmPrecisionScope fp32(core::Precision::fp32);
    return to_gates_->forward(x);  // [b, n, e]
  }();
  core::assert_finite(logits.value(), op, "gate logits (the input or to_gates.weight has NaN/Inf)");  // deferred on a GPU
  Variable noised = logits;
  if (noise_gates) {  // the draw comes first, as in the original
    Tensor u = moe::draw_or_take(draws.noise_uniform, {b, n, e}, "noise_uniform", op, topt, gen_);
    noised = ag::add(logits, ag::constant(core::mul(moe::gumbel_from_uniform(u), noise_mult)));
  }
  Variable probs = ag::softmax(noised, -1);

  Variable top_values;
  Tensor top_index;
  if (opt_.differentiable_topk) {
    auto t = moe::differentiable_topk(probs, k);
    top_values = t.values;
    top_index = t.indices;
  } else {
    auto t = ag::topk(probs, k, -1);
    top_values = t.values;
    top_index = t.indices;
  }
  // Normalised over the top-n with a clamp, not an additive eps (spec §7 C9).
  Variable gates = ag::div(top_values, ag::clamp(ag::sum(top_values, {-1}, true), opt_.eps, INFINITY));
  gates = ag::reshape(gates, {b * n, k});

  // Route choice j >= 1 with probability gate_j / threshold_j; drawn in train and eval.
  Tensor u = moe::draw_or_take(draws.route_uniform, {k, b, n}, "route_uniform", op, topt, gen_);
  const Tensor& thr = buffer(is_training() ? "threshold_train" : "threshold_eval");
  Tensor active = moe::route_by_threshold(gates.value(), u, thr, opt_.eps);

  moe::GateResult out;
  out.routing = moe::route_tokens(core::reshape(top_index, {b * n, k}), active, b, n, e, capacity(n));
  out.weights = ag::mul(gates, ag::constant(moe::kept_mask(out.routing, x.dtype())));
  out.straight_through = opt_.straight_through_dispatch_tensor;
  if (is_training()) {
    // balance: mean_{b,e}(mean_n(P) * density_1) * e^2; density_1 after capacity by default (C3).
    Tensor density = moe::first_choice_density(out.routing, x.dtype(), opt_.density_after_capacity);  // [b, e]
    Variable proxy = ag::mean(probs, {1});
    out.balance_loss = ag::mul(ag::mean(ag::mul(proxy, ag::constant(density))), static_cast<double>(e * e));
    // z-loss on the un-noised logits.
    out.router_z_loss = ag::mean(ag::square(ag::logsumexp(logits, {-1})));
  } else {
    out.balance_loss = ag::constant(buffer("zero"));
    out.router_z_loss = ag::constant(buffer("zero"));
  }
  return out;
}

moe::DenseGateOutput TopNGating::forward(const Variable& x, bool noise_gates, double noise_mult, const moe::Draws& draws) {
  moe::GateResult r = route(x, noise_gates, noise_mult, draws);
  return moe::densify(r, {x.size(0), x.size(1)});
}

std::string TopNGating::extra_repr() const {
  return fmt::format("dim={}, num_gates={}, top_n={}, capacity_factor_train={}, capacity_factor_eval={}, "
                     "min_expert_capacity={}, differentiable_topk={}, straight_through_dispatch_tensor={}{}",
                     dim_, num_gates_, opt_.top_n, opt_.capacity_factor_train, opt_.capacity_factor_eval,
                     opt_.min_expert_capacity, py_bool(opt_.differentiable_topk),
                     py_bool(opt_.straight_through_dispatch_tensor), opt_.dropless ? ", dropless=True" : "");
}

}  // namespace moegrad::nn::st
