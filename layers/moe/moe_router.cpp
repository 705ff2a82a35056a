#include "layers/moe/moe_router.h"

#include <fmt/ranges.h>

#include "core/precision.h"
#include "layers/activation.h"
#include "layers/check.h"
#include "layers/linear.h"
#include "layers/moe/draws.h"

namespace moegrad::nn::zeta {

MoERouter::MoERouter(std::int64_t dim, std::int64_t num_experts, std::vector<std::int64_t> hidden_layers,
                     std::string mechanism, TensorOptions options, core::Generator* gen)
    : dim_(dim), num_experts_(num_experts), hidden_(std::move(hidden_layers)), mechanism_(std::move(mechanism)), gen_(gen) {
  const char* op = "MoERouter";
  MOEGRAD_CHECK(dim > 0 && num_experts > 0, op, "dim and num_experts must be > 0, got {} and {}", dim, num_experts);
  MOEGRAD_CHECK(mechanism_ == "softmax" || mechanism_ == "gumbel", op,
                "unknown mechanism '{}': expected 'softmax' or 'gumbel'", mechanism_);
  for (auto h : hidden_) MOEGRAD_CHECK(h > 0, op, "hidden layer sizes must be > 0, got [{}]", fmt::join(hidden_, ", "));
  layers_ = register_module("layers", std::make_shared<Sequential>());
  std::int64_t in = dim;
  for (std::size_t i = 0; i < hidden_.size(); ++i) {
    if (i > 0) layers_->push_back(std::make_shared<ReLU>());
    layers_->push_back(std::make_shared<Linear>(in, hidden_[i], true, options, gen));
    in = hidden_[i];
  }
  if (!hidden_.empty()) layers_->push_back(std::make_shared<ReLU>());
  layers_->push_back(std::make_shared<Linear>(in, num_experts, true, options, gen));
}

Variable MoERouter::forward(const Variable& x, const moe::Draws& draws) {
  const char* op = "MoERouter";
  MOEGRAD_CHECK(x.defined(), op, "input is undefined");
  check_last_dim(op, x, dim_, "dim");
  Variable logits = [&] {  // the router runs FP32 whatever the GEMM precision (core/precision.h)
    const core::GemmPrecisionScope fp32(core::Precision::fp32);
    return layers_->forward(x);
  }();
  if (mechanism_ == "softmax") return ag::softmax(logits, -1);
  Tensor noise = draws.gumbel_noise.defined()
                     ? moe::draw_or_take(draws.gumbel_noise, logits.shape(), "gumbel_noise", op,
                                         {logits.dtype(), logits.value().device()}, gen_)
                     : core::gumbel(logits.shape(), {logits.dtype(), logits.value().device()}, gen_);
  Variable soft = ag::softmax(ag::add(logits, ag::constant(noise)), -1);
  Tensor index = core::argmax(soft.value(), -1, true);
  Tensor hard = core::scatter(core::zeros_like(soft.value()), -1, index, core::ones(index.shape(), {soft.dtype(), soft.value().device()}));
  return ag::add(ag::sub(ag::constant(hard), ag::constant(soft.value())), soft);
}

std::string MoERouter::extra_repr() const {
  return fmt::format("dim={}, num_experts={}, hidden_layers=[{}], mechanism='{}'", dim_, num_experts_,
                     fmt::join(hidden_, ", "), mechanism_);
}

}  // namespace moegrad::nn::zeta
