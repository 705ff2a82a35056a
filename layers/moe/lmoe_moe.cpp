#include "layers/moe/lmoe_moe.h"

#include "layers/activation.h"
#include "layers/check.h"

namespace moegrad::nn::lmoe {

namespace {
Top2GatingOptions gating_options(const MoEOptions& o, std::vector<std::int64_t> outer = {}) {
  Top2GatingOptions g;
  g.outer_expert_dims = std::move(outer);
  g.second_policy_train = o.second_policy_train;
  g.second_policy_eval = o.second_policy_eval;
  g.second_threshold_train = o.second_threshold_train;
  g.second_threshold_eval = o.second_threshold_eval;
  g.capacity_factor_train = o.capacity_factor_train;
  g.capacity_factor_eval = o.capacity_factor_eval;
  g.dropless = o.dropless;
  return g;
}

std::shared_ptr<Experts> make_experts(std::int64_t dim, std::vector<std::int64_t> counts, const MoEOptions& o,
                                      TensorOptions options, core::Generator* gen) {
  if (o.experts) {
    MOEGRAD_CHECK(o.experts->dim() == dim && o.experts->num_experts() == counts, "lmoe.MoE",
                  "custom experts must have dim {} and expert dims {}, got dim {} and {}", dim, core::shape_str(counts),
                  o.experts->dim(), core::shape_str(o.experts->num_experts()));
    return o.experts;
  }
  auto act = o.activation ? o.activation : std::make_shared<ReLU>();
  return std::make_shared<Experts>(dim, std::move(counts), o.hidden_dim, act, options, gen);
}

void check_tokens(const char* op, const Variable& x, std::int64_t dim, const Tensor& like) {
  check_input(op, x, like);
  if (x.dim() != 3 || x.size(-1) != dim || x.size(0) == 0 || x.size(1) == 0)
    fail(op, "input must be [batch, seq, dim = {}] with batch, seq > 0, got {}", dim, core::describe(x.value()));
}
}  // namespace

MoE::MoE(std::int64_t dim, std::int64_t num_experts, MoEOptions opt, TensorOptions options, core::Generator* gen)
    : dim_(dim), num_experts_(num_experts), loss_coef_(opt.loss_coef) {
  gate_ = register_module("gate", std::make_shared<Top2Gating>(dim, num_experts, gating_options(opt), options, gen));
  experts_ = register_module("experts", make_experts(dim, {num_experts}, opt, options, gen));
}

MoEOutput MoE::forward(const Variable& x, const moe::Draws& draws) {
  check_tokens("lmoe.MoE", x, dim_, gate_->parameter("w_gating").value());
  const std::int64_t b = x.size(0), n = x.size(1);
  moe::GateResult g = gate_->route(x, {}, draws.policy_uniform);
  stats_ = moe::routing_stats(g.routing);
  const moe::RowMap rows = moe::compact_rows(g.routing);
  Variable buffer = ag::dispatch_rows(ag::reshape(x, {b * n, dim_}), rows.row, moe::dispatch_scale(g.weights, false),
                                      rows.num_rows);
  Variable expert_out = experts_->forward_rows(buffer, rows.offsets);
  Variable out = ag::combine_rows(expert_out, rows.row, g.weights);
  return {ag::reshape(out, {b, n, dim_}), ag::mul(g.balance_loss, loss_coef_)};
}

HeirarchicalMoE::HeirarchicalMoE(std::int64_t dim, std::pair<std::int64_t, std::int64_t> num_experts, MoEOptions opt,
                                 TensorOptions options, core::Generator* gen)
    : dim_(dim), outer_(num_experts.first), inner_(num_experts.second), loss_coef_(opt.loss_coef) {
  gate_outer_ = register_module("gate_outer", std::make_shared<Top2Gating>(dim, outer_, gating_options(opt), options, gen));
  gate_inner_ = register_module("gate_inner",
                                std::make_shared<Top2Gating>(dim, inner_, gating_options(opt, {outer_}), options, gen));
  experts_ = register_module("experts", make_experts(dim, {outer_, inner_}, opt, options, gen));
}

MoEOutput HeirarchicalMoE::forward(const Variable& x, const moe::Draws& draws) {
  check_tokens("lmoe.HeirarchicalMoE", x, dim_, gate_outer_->parameter("w_gating").value());
  const std::int64_t b = x.size(0), n = x.size(1);

  // Outer level: tokens into the padded [eo, b, co] buffer the inner gate reads.
  moe::GateResult go = gate_outer_->route(x, {}, draws.policy_uniform);
  outer_stats_ = moe::routing_stats(go.routing);
  const std::int64_t co = go.routing.capacity;
  const moe::RowMap outer_rows = moe::padded_rows(go.routing);
  Variable xo = ag::dispatch_rows(ag::reshape(x, {b * n, dim_}), outer_rows.row, moe::dispatch_scale(go.weights, false),
                                  outer_rows.num_rows);  // [eo * b * co, d]

  // importance of each slot: 1 first choice (weight > 0.5), 0.5 second choice, 0 empty (spec §2.4).
  // Routing metadata: computed on the host from host copies (the weights may live on a GPU),
  // then moved to the input's device.
  const core::Device host = core::Device::cpu();
  const Tensor w = core::to_dtype(core::contiguous(core::to_device(go.weights.value(), host)), core::DType::f64);
  const Tensor rows = core::contiguous(core::to_device(outer_rows.row, host));
  Tensor importance = core::zeros({outer_rows.num_rows}, {core::DType::f64, host});
  {
    const std::int64_t* row = rows.data<std::int64_t>();
    const double* wp = w.data<double>();
    double* imp = importance.data<double>();
    for (std::int64_t i = 0; i < rows.numel(); ++i)
      if (row[i] >= 0) imp[row[i]] = 0.5 * ((wp[i] > 0.5 ? 1.0 : 0.0) + (wp[i] > 0.0 ? 1.0 : 0.0));
  }
  importance = core::to_device(core::to_dtype(core::reshape(importance, {outer_, b, co}), x.dtype()), x.device());

  // Inner level: groups (eo, b) of co slots, experts flat over (eo, ei).
  moe::GateResult gi = gate_inner_->route(ag::reshape(xo, {outer_, b, co, dim_}), importance, draws.policy_uniform_inner);
  stats_ = moe::routing_stats(gi.routing);
  const moe::RowMap inner_rows = moe::compact_rows(gi.routing);
  Variable buffer = ag::dispatch_rows(xo, inner_rows.row, moe::dispatch_scale(gi.weights, false), inner_rows.num_rows);
  Variable expert_out = experts_->forward_rows(buffer, inner_rows.offsets);
  Variable yo = ag::combine_rows(expert_out, inner_rows.row, gi.weights);  // [eo * b * co, d]
  Variable out = ag::combine_rows(yo, outer_rows.row, go.weights);
  return {ag::reshape(out, {b, n, dim_}), ag::mul(ag::add(go.balance_loss, gi.balance_loss), loss_coef_)};
}

}  // namespace moegrad::nn::lmoe
