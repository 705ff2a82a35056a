// CausalSelfAttention(dim, heads): multi-head causal self-attention with rotary position
// embeddings (RoPE, the half-split form of GPT-NeoX / LLaMA), no learned positions:
//   x [B, T, dim] -> q, k, v = x W_q^T, x W_k^T, x W_v^T  (Linear, no bias), each split into
//   heads [B, H, T, D] (D = dim / heads, even) -> q, k rotated by position -> ag::causal_attention
//   (scale 1 / sqrt(D)) -> heads joined [B, T, dim] -> W_o (Linear, no bias).
// Rotation of one head vector at position t, with x = (x1, x2) its two halves [D / 2] and
// theta_i = t * base^(-2 i / D):  (x1 cos theta - x2 sin theta, x1 sin theta + x2 cos theta).
// Position enters only through q . k, so any sequence length runs (the trained one generalises best).
#pragma once
#include "layers/linear.h"
#include "layers/module.h"

namespace moegrad::nn {

constexpr double kRotaryBase = 10000.0;

// The angles of positions 0 .. t-1 for head width d: cos and sin [t, d / 2] in dtype on device
// (t, d, dtype and device are read off the tables).
struct RotaryTables {
  double base = 0;
  Tensor cos, sin;
  std::int64_t t() const { return cos.size(0); }
  std::int64_t d() const { return 2 * cos.size(1); }
  // Whether these are the tables of (positions, width, angle_base, dtype, device).
  bool fits(std::int64_t positions, std::int64_t width, double angle_base, DType dtype, core::Device device) const;
};
RotaryTables rotary_tables(std::int64_t t, std::int64_t d, double base, DType dtype, core::Device device);

// Rotates x [..., T, D] by position (t = 0 .. T-1 along dim -2), D even; differentiable in x.
Variable apply_rotary(const Variable& x, double base = kRotaryBase);
Variable apply_rotary(const Variable& x, const RotaryTables& tables);

class CausalSelfAttention : public UnaryModule {
 public:
  CausalSelfAttention(std::int64_t dim, std::int64_t heads, TensorOptions options = {}, core::Generator* gen = nullptr);
  Variable forward(const Variable& x) override;  // x [B, T, dim] -> [B, T, dim]; position t sees 0..t

  std::int64_t dim() const { return dim_; }
  std::int64_t heads() const { return heads_; }
  std::string name() const override { return "CausalSelfAttention"; }
  std::string extra_repr() const override { return fmt::format("dim={}, heads={}, rotary=True", dim_, heads_); }

 private:
  std::int64_t dim_, heads_, head_dim_;
  std::shared_ptr<Linear> q_, k_, v_, out_;
  RotaryTables rotary_;  // of the last forward's T, dtype and device
};

}  // namespace moegrad::nn
