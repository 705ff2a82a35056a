#include "layers/attention.h"

#include <cmath>
#include <vector>

#include "core/error.h"
#include "core/ops/creation.h"

namespace moegrad::nn {

RotaryTables rotary_tables(std::int64_t t, std::int64_t d, double base, DType dtype, core::Device device) {
  MOEGRAD_CHECK(t >= 0 && d > 0 && d % 2 == 0, "rotary", "needs T >= 0 and an even head width D > 0, got T {} and D {}",
                t, d);
  const std::int64_t half = d / 2;
  // cos, sin [T, D / 2] of theta = t * base^(-2 i / D), computed in double, stored in dtype.
  std::vector<double> c(static_cast<std::size_t>(t * half)), s(c.size());
  for (std::int64_t p = 0; p < t; ++p)
    for (std::int64_t i = 0; i < half; ++i) {
      const double theta = static_cast<double>(p) * std::pow(base, -2.0 * static_cast<double>(i) / static_cast<double>(d));
      c[static_cast<std::size_t>(p * half + i)] = std::cos(theta);
      s[static_cast<std::size_t>(p * half + i)] = std::sin(theta);
    }
  const auto table = [&](const std::vector<double>& v) {
    return core::to_device(core::to_dtype(core::from_vector<double>(v, {t, half}), dtype), device);
  };
  return {base, table(c), table(s)};
}

bool RotaryTables::fits(std::int64_t positions, std::int64_t width, double angle_base, DType dtype,
                        core::Device device) const {
  return cos.defined() && t() == positions && d() == width && base == angle_base && cos.dtype() == dtype &&
         cos.device() == device;
}

Variable apply_rotary(const Variable& x, const RotaryTables& tables) {
  MOEGRAD_CHECK(tables.cos.defined() && tables.sin.defined(), "rotary", "the tables are empty (make them with rotary_tables)");
  MOEGRAD_CHECK(x.dim() >= 2 && x.size(-2) == tables.t() && x.size(-1) == tables.d(), "rotary",
                "x must be [..., T, D] = [..., {}, {}] for these tables, got {}", tables.t(), tables.d(),
                core::describe(x.value()));
  return ag::rotary(x, tables.cos, tables.sin);
}

Variable apply_rotary(const Variable& x, double base) {
  MOEGRAD_CHECK(x.dim() >= 2 && x.size(-1) % 2 == 0, "rotary", "x must be [..., T, D] with D even, got {}",
                core::describe(x.value()));
  return apply_rotary(x, rotary_tables(x.size(-2), x.size(-1), base, x.dtype(), x.device()));
}

CausalSelfAttention::CausalSelfAttention(std::int64_t dim, std::int64_t heads, TensorOptions options,
                                         core::Generator* gen)
    : dim_(dim), heads_(heads), head_dim_(heads > 0 ? dim / heads : 0) {
  MOEGRAD_CHECK(dim > 0 && heads > 0 && dim % heads == 0, "CausalSelfAttention",
                "dim must be a positive multiple of heads, got dim {} and heads {}", dim, heads);
  MOEGRAD_CHECK(head_dim_ % 2 == 0, "CausalSelfAttention",
                "the head width dim / heads must be even for the rotary embedding, got {} / {} = {}", dim, heads,
                head_dim_);
  q_ = register_module("q_proj", std::make_shared<Linear>(dim, dim, false, options, gen));
  k_ = register_module("k_proj", std::make_shared<Linear>(dim, dim, false, options, gen));
  v_ = register_module("v_proj", std::make_shared<Linear>(dim, dim, false, options, gen));
  out_ = register_module("out_proj", std::make_shared<Linear>(dim, dim, false, options, gen));
}

Variable CausalSelfAttention::forward(const Variable& x) {
  MOEGRAD_CHECK(x.dim() == 3 && x.size(2) == dim_, "CausalSelfAttention", "x must be [B, T, {}], got {}", dim_,
                core::describe(x.value()));
  const std::int64_t b = x.size(0), t = x.size(1);
  // [B, T, dim] -> a [B, H, T, D] view (rows H D apart), no copy: the rotary embedding writes
  // new q and k, and causal_attention reads v (and its incoming gradient) in place.
  const auto heads = [&](const Variable& y) {
    return ag::permute(ag::reshape(y, {b, t, heads_, head_dim_}), {0, 2, 1, 3});
  };
  // The angle tables are kept while T, the dtype and the device stay (every training step).
  if (!rotary_.fits(t, head_dim_, kRotaryBase, x.dtype(), x.device()))
    rotary_ = rotary_tables(t, head_dim_, kRotaryBase, x.dtype(), x.device());
  const Variable q = apply_rotary(heads(q_->forward(x)), rotary_), k = apply_rotary(heads(k_->forward(x)), rotary_);
  const Variable v = heads(v_->forward(x));
  const Variable o = ag::causal_attention(q, k, v, 1.0 / std::sqrt(static_cast<double>(head_dim_)));
  return out_->forward(ag::reshape(ag::contiguous(ag::permute(o, {0, 2, 1, 3})), {b, t, dim_}));
}

}  // namespace moegrad::nn
