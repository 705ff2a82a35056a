#include "layers/lmoe_experts.h"

#include <fmt/ranges.h>

#include <cmath>

#include "layers/activation.h"
#include "layers/check.h"

namespace moegrad::nn::lmoe {

Experts::Experts(std::int64_t dim, std::vector<std::int64_t> num_experts, std::int64_t hidden_dim,
                 std::shared_ptr<UnaryModule> activation, TensorOptions options, core::Generator* gen)
    : dim_(dim), hidden_(hidden_dim > 0 ? hidden_dim : 4 * dim), experts_(std::move(num_experts)) {
  MOEGRAD_CHECK(dim > 0 && hidden_dim >= 0, "lmoe.Experts", "dim must be > 0 and hidden_dim >= 0, got {} and {}", dim,
                hidden_dim);
  MOEGRAD_CHECK(!experts_.empty(), "lmoe.Experts", "num_experts must name at least one expert dim");
  for (auto e : experts_)
    MOEGRAD_CHECK(e > 0, "lmoe.Experts", "expert counts must be > 0, got {}", core::shape_str(experts_));
  Shape s1 = experts_, s2 = experts_;
  s1.insert(s1.end(), {dim_, hidden_});
  s2.insert(s2.end(), {hidden_, dim_});
  // init_: U(±1/sqrt(last dim)); w1 first, then w2.
  const double b1 = 1.0 / std::sqrt(static_cast<double>(hidden_));
  const double b2 = 1.0 / std::sqrt(static_cast<double>(dim_));
  register_parameter("w1", core::uniform(s1, -b1, b1, options, gen));
  register_parameter("w2", core::uniform(s2, -b2, b2, options, gen));
  act_ = register_module("act", activation ? std::move(activation) : std::make_shared<GELU>());
  local_ = total_experts();
}

Variable Experts::forward(const Variable& x) {
  const Variable& w1 = parameter("w1");
  check_input("lmoe.Experts", x, w1.value());
  if (sharded())
    fail("lmoe.Experts", "holds experts [{}, {}) of {} only (expert parallelism): the dense forward [*E, rows, d] needs "
         "every expert; use forward_rows", first_, first_ + local_, total_experts());
  const auto ne = static_cast<std::int64_t>(experts_.size());
  bool ok = x.dim() == ne + 2 && x.size(-1) == dim_;
  for (std::int64_t i = 0; ok && i < ne; ++i) ok = x.size(i) == experts_[i] || x.size(i) == 1;
  if (!ok) {
    fail("lmoe.Experts", "input must be [{}, rows, dim={}] (a leading dim may be 1), got {}", fmt::join(experts_, ", "),
         dim_, core::describe(x.value()));
  }
  return ag::matmul(act_->forward(ag::matmul(x, w1)), parameter("w2"));
}

std::int64_t Experts::total_experts() const { return core::shape_numel(experts_); }

Variable Experts::forward_rows(const Variable& rows, const Tensor& offsets) {
  const Variable& w1 = parameter("w1");
  check_input("lmoe.Experts", rows, w1.value(), 2);
  if (rows.dim() != 2 || rows.size(1) != dim_)
    fail("lmoe.Experts", "rows must be [R, dim={}], got {}", dim_, core::describe(rows.value()));
  MOEGRAD_CHECK(offsets.numel() == local_ + 1, "lmoe.Experts", "offsets must have {} + 1 = {} entries, got {}",
                sharded() ? "local experts" : "total experts", local_ + 1, core::describe(offsets));
  const std::int64_t E = local_;
  Variable h = ag::grouped_matmul(rows, ag::reshape(w1, {E, dim_, hidden_}), offsets, false);
  return ag::grouped_matmul(act_->forward(h), ag::reshape(parameter("w2"), {E, hidden_, dim_}), offsets, false);
}

void Experts::keep_experts(std::int64_t first, std::int64_t count) {
  const char* op = "lmoe.Experts";
  MOEGRAD_CHECK(!sharded(), op, "already holds experts [{}, {}) only; keep_experts runs once", first_, first_ + local_);
  MOEGRAD_CHECK(first >= 0 && count >= 1 && first + count <= total_experts(), op, "cannot keep experts [{}, {}) of {}",
                first, first + count, total_experts());
  const std::int64_t X = total_experts();
  resize_parameter("w1", core::clone(core::narrow(core::reshape(parameter("w1").value(), {X, dim_, hidden_}), 0, first, count)));
  resize_parameter("w2", core::clone(core::narrow(core::reshape(parameter("w2").value(), {X, hidden_, dim_}), 0, first, count)));
  first_ = first;
  local_ = count;
}

Shape Experts::full_shape(const std::string& parameter) const {
  MOEGRAD_CHECK(parameter == "w1" || parameter == "w2", "lmoe.Experts", "no expert parameter '{}' (w1, w2)", parameter);
  Shape s = experts_;
  if (parameter == "w1")
    s.insert(s.end(), {dim_, hidden_});
  else
    s.insert(s.end(), {hidden_, dim_});
  return s;
}

std::string Experts::extra_repr() const {
  if (sharded())
    return fmt::format("dim={}, num_experts={}, hidden_dim={} (holds experts {}..{})", dim_, core::shape_str(experts_),
                       hidden_, first_, first_ + local_ - 1);
  return fmt::format("dim={}, num_experts={}, hidden_dim={}", dim_, core::shape_str(experts_), hidden_);
}

}  // namespace moegrad::nn::lmoe
