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
  init_placement(num_experts);
}

moe::MoEOutput MoE::forward(const Variable& x, const moe::MoEForward& f) {
  const char* op = op_name();
  check_input(op, x, gate_->parameter("to_gates.weight").value());
  if (x.dim() != 3 || x.size(-1) != dim_)
    fail(op, "input must be [batch, seq, dim = {}], got {}", dim_, core::describe(x.value()));
  const std::int64_t b = x.size(0), n = x.size(1);
  moe::GateResult g = gate_->route(x, f.noise_gates, f.noise_mult, f.draws);
  last_.set(g.routing);
  if (record_tokens_) token_routing_ = moe::token_routing(g.routing, g.weights.value(), b, n);
  const moe::Pipeline p(g.routing, row_layout_, placement_);
  last_exchanged_rows_ = p.exchanged_rows();
  Variable out = p.run(ag::reshape(x, {b * n, dim_}), moe::dispatch_scale(g.weights, g.straight_through), g.weights,
                       [this](const Variable& rows, const Tensor& offsets) { return experts_->forward_rows(rows, offsets); });
  Variable total = ag::add(ag::mul(g.balance_loss, opt_.balance_loss_coef), ag::mul(g.router_z_loss, opt_.router_z_loss_coef));
  return {ag::reshape(out, {b, n, dim_}), total, g.balance_loss, g.router_z_loss};
}

std::vector<std::string> MoE::expert_parameter_names() const {
  std::vector<std::string> names;
  for (const auto& [name, v] : experts_->named_parameters()) names.push_back("experts." + name);
  return names;
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

moe::MoEOutput SparseMoEBlock::forward(const Variable& x, const moe::MoEForward& f) {
  Variable h = x;
  if (ff_before_) h = ag::add(ff_before_->forward(h), h);
  moe::MoEOutput r = moe_->forward(prenorm_->forward(h), f);
  h = ag::add(r.output, h);
  if (ff_after_) h = ag::add(ff_after_->forward(h), h);
  r.output = h;
  return r;
}

}  // namespace moegrad::nn::st
