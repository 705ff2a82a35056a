#include "layers/moe/st_moe.h"

#include "layers/check.h"

namespace moegrad::nn::st {

namespace {
TopNGatingOptions gating_options(const MoEOptions& o) {
  TopNGatingOptions g;
  g.eps = o.eps;
  g.top_n = o.gating_top_n;
  g.threshold_train = o.threshold_train;
  g.threshold_eval = o.threshold_eval;
  g.capacity_factor_train = o.capacity_factor_train;
  g.capacity_factor_eval = o.capacity_factor_eval;
  g.straight_through_dispatch_tensor = o.straight_through_dispatch_tensor;
  g.differentiable_topk = o.differentiable_topk;
  g.differentiable_topk_fused = o.differentiable_topk_fused;
  g.min_expert_capacity = o.min_expert_capacity;
  g.dropless = o.dropless;
  return g;
}
}  // namespace

MoE::MoE(std::int64_t dim, std::int64_t num_experts, MoEOptions opt, TensorOptions options, core::Generator* gen)
    : dim_(dim), opt_(std::move(opt)) {
  gate_ = register_module("gate", std::make_shared<TopNGating>(dim, num_experts, gating_options(opt_), options, gen));
  experts_ = register_module("experts", std::make_shared<Experts>(dim, num_experts, opt_.expert_hidden_mult, options, gen));
}

MoEOutput MoE::forward(const Variable& x, bool noise_gates, double noise_mult, const moe::Draws& draws) {
  const char* op = "st_moe.MoE";
  check_input(op, x, gate_->parameter("to_gates.weight").value());
  if (x.dim() != 3 || x.size(-1) != dim_)
    fail(op, "input must be [batch, seq, dim = {}], got {}", dim_, core::describe(x.value()));
  const std::int64_t b = x.size(0), n = x.size(1);
  moe::GateResult g = gate_->route(x, noise_gates, noise_mult, draws);
  last_.set(g.routing);
  const moe::RowMap rows = moe::expert_rows(g.routing, row_layout_);
  Variable scale = moe::dispatch_scale(g.weights, g.straight_through);
  Variable buffer = ag::dispatch_rows(ag::reshape(x, {b * n, dim_}), rows.row, scale, rows.num_rows);
  Variable expert_out = experts_->forward_rows(buffer, rows.offsets);
  Variable out = ag::reshape(ag::combine_rows(expert_out, rows.row, g.weights, /*distinct_rows=*/true), {b, n, dim_});
  Variable total = ag::add(ag::mul(g.balance_loss, opt_.balance_loss_coef), ag::mul(g.router_z_loss, opt_.router_z_loss_coef));
  return {out, total, g.balance_loss, g.router_z_loss};
}

SparseMoEBlock::SparseMoEBlock(std::shared_ptr<MoE> moe, bool add_ff_before, bool add_ff_after, core::Generator* gen) {
  MOEGRAD_CHECK(moe != nullptr, "SparseMoEBlock", "needs a MoE");
  const std::int64_t dim = moe->dim();
  const TensorOptions options{moe->gate()->parameter("to_gates.weight").dtype(),
                              moe->gate()->parameter("to_gates.weight").value().device()};
  moe_ = register_module("moe", std::move(moe));
  prenorm_ = register_module("moe_prenorm", std::make_shared<RMSNorm>(dim, options));
  if (add_ff_before) ff_before_ = register_module("ff_before", std::make_shared<Expert>(dim, 4.0, true, true, options, gen));
  if (add_ff_after) ff_after_ = register_module("ff_after", std::make_shared<Expert>(dim, 4.0, true, true, options, gen));
}

MoEOutput SparseMoEBlock::forward(const Variable& x, bool noise_gates, double noise_mult, const moe::Draws& draws) {
  Variable h = x;
  if (ff_before_) h = ag::add(ff_before_->forward(h), h);
  MoEOutput r = moe_->forward(prenorm_->forward(h), noise_gates, noise_mult, draws);
  h = ag::add(r.outputs, h);
  if (ff_after_) h = ag::add(ff_after_->forward(h), h);
  r.outputs = h;
  return r;
}

}  // namespace moegrad::nn::st
