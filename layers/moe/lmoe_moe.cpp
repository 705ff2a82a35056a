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
  init_placement(num_experts);
}

moe::MoEOutput MoE::forward(const Variable& x, const moe::MoEForward& f) {
  check_tokens(op_name(), x, dim_, gate_->parameter("w_gating").value());
  const std::int64_t b = x.size(0), n = x.size(1);
  moe::GateResult g = gate_->route(x, {}, f.draws.policy_uniform);
  last_.set(g.routing);
  if (record_tokens_) token_routing_ = moe::token_routing(g.routing, g.weights.value(), b, n);
  const moe::Pipeline p(g.routing, row_layout_, placement_);
  last_exchanged_rows_ = p.exchanged_rows();
  Variable out = p.run(ag::reshape(x, {b * n, dim_}), moe::dispatch_scale(g.weights, false), g.weights,
                       [this](const Variable& rows, const Tensor& offsets) { return experts_->forward_rows(rows, offsets); });
  return {ag::reshape(out, {b, n, dim_}), ag::mul(g.balance_loss, loss_coef_), g.balance_loss, Variable()};
}

HeirarchicalMoE::HeirarchicalMoE(std::int64_t dim, std::pair<std::int64_t, std::int64_t> num_experts, MoEOptions opt,
                                 TensorOptions options, core::Generator* gen)
    : dim_(dim), outer_(num_experts.first), inner_(num_experts.second), loss_coef_(opt.loss_coef) {
  gate_outer_ = register_module("gate_outer", std::make_shared<Top2Gating>(dim, outer_, gating_options(opt), options, gen));
  gate_inner_ = register_module("gate_inner",
                                std::make_shared<Top2Gating>(dim, inner_, gating_options(opt, {outer_}), options, gen));
  experts_ = register_module("experts", make_experts(dim, {outer_, inner_}, opt, options, gen));
  init_placement(outer_ * inner_);
}

moe::MoEOutput HeirarchicalMoE::forward(const Variable& x, const moe::MoEForward& f) {
  const moe::Draws& draws = f.draws;
  check_tokens(op_name(), x, dim_, gate_outer_->parameter("w_gating").value());
  const std::int64_t b = x.size(0), n = x.size(1);

  // Outer level: tokens into the padded [eo, b, co] buffer the inner gate reads (a pipeline
  // without experts: only its dispatch and combine run, on this rank's tokens).
  moe::GateResult go = gate_outer_->route(x, {}, draws.policy_uniform);
  last_outer_.set(go.routing);
  const std::int64_t co = go.routing.capacity;
  const moe::Pipeline outer(go.routing, moe::RowLayout::padded, moe::ExpertPlacement{});
  const moe::RowMap& outer_rows = outer.rows();
  Variable xo = outer.dispatch(ag::reshape(x, {b * n, dim_}), moe::dispatch_scale(go.weights, false));  // [eo * b * co, d]

  // importance of each slot: 1 first choice (weight > 0.5), 0.5 second choice, 0 empty (spec §2.4),
  // on the input's device: each choice's value lands on its row (rows are distinct; unrouted
  // choices go to a spare row R that is dropped).
  const Tensor w = go.weights.value();
  const Tensor value = core::mul(core::add(core::to_dtype(core::gt(w, 0.5), x.dtype()), core::to_dtype(core::gt(w, 0.0), x.dtype())), 0.5);
  const std::int64_t R = outer_rows.num_rows;
  const Tensor spare = core::full(outer_rows.row.shape(), static_cast<double>(R), {core::DType::i64, x.device()});
  const Tensor target = core::reshape(core::where(core::lt(outer_rows.row, 0.0), spare, outer_rows.row), {-1});
  Tensor importance = core::index_add(core::zeros({R + 1}, {x.dtype(), x.device()}), 0, target, core::reshape(value, {-1}));
  importance = core::reshape(core::narrow(importance, 0, 0, R), {outer_, b, co});

  // Inner level: groups (eo, b) of co slots, experts flat over (eo, ei): the pipeline with the
  // experts (and their exchange under expert parallelism).
  moe::GateResult gi = gate_inner_->route(ag::reshape(xo, {outer_, b, co, dim_}), importance, draws.policy_uniform_inner);
  last_.set(gi.routing);
  if (record_tokens_)
    token_routing_ = moe::hierarchical_token_routing(go.routing, go.weights.value(), outer_rows.row, gi.routing,
                                                     gi.weights.value(), b, n);
  const moe::Pipeline inner(gi.routing, row_layout_, placement_);
  last_exchanged_rows_ = inner.exchanged_rows();
  Variable yo = inner.run(xo, moe::dispatch_scale(gi.weights, false), gi.weights,
                          [this](const Variable& rows, const Tensor& offsets) { return experts_->forward_rows(rows, offsets); });
  Variable out = outer.combine(yo, go.weights);  // [b * n, d]
  Variable balance = ag::add(go.balance_loss, gi.balance_loss);
  return {ag::reshape(out, {b, n, dim_}), ag::mul(balance, loss_coef_), balance, Variable()};
}

}  // namespace moegrad::nn::lmoe
