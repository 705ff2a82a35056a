#include "layers/moe/st_experts.h"

#include "layers/check.h"
#include "layers/moe/routing.h"
#include "layers/st_expert.h"

namespace moegrad::nn::st {

const std::vector<std::pair<std::string, std::string>>& Experts::key_map() {
  static const std::vector<std::pair<std::string, std::string>> map{{"net.0.weight", "w_in"},
                                                                     {"net.0.bias", "b_in"},
                                                                     {"net.1.mult_bias", "mult_bias"},
                                                                     {"net.2.weight", "w_out"},
                                                                     {"net.2.bias", "b_out"}};
  return map;
}

Experts::Experts(std::int64_t dim, std::int64_t num_experts, double hidden_mult, TensorOptions options,
                 core::Generator* gen)
    : dim_(dim), hidden_(Expert::hidden_dim_for(dim, hidden_mult)), num_experts_(num_experts), local_(num_experts) {
  const char* op = "st.Experts";
  MOEGRAD_CHECK(dim > 0 && num_experts > 0 && hidden_ > 0, op,
                "need dim, num_experts and int(dim * hidden_mult * 2 / 3) > 0, got {}, {} and {}", dim, num_experts, hidden_);
  const std::int64_t E = num_experts, h = hidden_;
  Tensor w_in = core::empty_for(op, {E, 2 * h, dim}, options), b_in = core::empty_for(op, {E, 2 * h}, options);
  Tensor mult = core::empty_for(op, {E, h}, options), w_out = core::empty_for(op, {E, dim, h}, options);
  Tensor b_out = core::empty_for(op, {E, dim}, options);
  const std::vector<Tensor> stacked{w_in, b_in, mult, w_out, b_out};
  for (std::int64_t i = 0; i < E; ++i) {
    Expert one(dim, hidden_mult, /*mult_bias=*/true, /*prenorm=*/false, options, gen);
    const StateDict sd = one.state_dict();
    for (std::size_t p = 0; p < stacked.size(); ++p) core::copy_(core::select(stacked[p], 0, i), sd.at(key_map()[p].first));
  }
  for (std::size_t p = 0; p < stacked.size(); ++p) register_parameter(key_map()[p].second, stacked[p]);
}

Variable Experts::forward_rows(const Variable& rows, const Tensor& offsets) {
  const char* op = "st.Experts";
  const Variable& w_in = parameter("w_in");
  check_input(op, rows, w_in.value(), 2);
  if (rows.dim() != 2 || rows.size(1) != dim_) fail(op, "rows must be [R, dim={}], got {}", dim_, core::describe(rows.value()));
  MOEGRAD_CHECK(offsets.numel() == local_ + 1, op, "offsets must have {} + 1 = {} entries, got {}",
                sharded() ? "local experts" : "num_experts", local_ + 1, core::describe(offsets));
  // The Linear biases b_in, b_out [E, w] start each group's GEMM output (beta = 1). GEGLU's
  // multiplier [E, hidden]: with equal row counts (the padded layout, or every expert at
  // capacity) h is viewed [E, m, 2 hidden] and the multiplier broadcast as [E, 1, hidden]
  // (nothing per row is built); otherwise per-row expert ids pick it (index_select, whose
  // gradient sums it back by index_add).
  const Tensor off = core::contiguous(core::to_device(offsets, core::Device::cpu()));
  const std::vector<std::int64_t> o = off.to_vector<std::int64_t>();
  const std::int64_t E = local_, R = o.back(), m = core::equal_group_rows(o);
  const bool uniform = m >= 0;
  const Variable& mult = parameter("mult_bias");  // [E, hidden]
  const Variable h = ag::grouped_matmul(rows, w_in, off, true, parameter("b_in"));  // [R, 2 hidden]
  // GEGLU: (gelu(gate) * value) * mult, fused
  const Variable act =
      uniform ? ag::reshape(ag::geglu(ag::reshape(h, {E, m, 2 * hidden_}), ag::unsqueeze(mult, 1)), {R, hidden_})
              : ag::geglu(h, ag::index_select(mult, 0, core::to_device(moe::row_experts(off), rows.value().device())));
  return ag::grouped_matmul(act, parameter("w_out"), off, true, parameter("b_out"));
}

Variable Experts::forward(const Variable& x) {
  const char* op = "st.Experts";
  check_input(op, x, parameter("w_in").value());
  if (sharded())
    fail(op, "holds experts [{}, {}) of {} only (expert parallelism): the dense forward [b, E, c, d] needs every expert; "
         "use forward_rows", first_, first_ + local_, num_experts_);
  if (x.dim() != 4 || x.size(1) != num_experts_ || x.size(3) != dim_)
    fail(op, "input must be [batch, num_experts = {}, capacity, dim = {}], got {}", num_experts_, dim_,
         core::describe(x.value()));
  const std::int64_t b = x.size(0), c = x.size(2), E = num_experts_;
  Variable rows = ag::reshape(ag::permute(x, {1, 0, 2, 3}), {E * b * c, dim_});
  Tensor off = core::mul(core::arange(E + 1), b * c);
  Variable y = forward_rows(rows, off);
  return ag::permute(ag::reshape(y, {E, b, c, dim_}), {1, 0, 2, 3});
}

void Experts::keep_experts(std::int64_t first, std::int64_t count) {
  const char* op = "st.Experts";
  MOEGRAD_CHECK(!sharded(), op, "already holds experts [{}, {}) only; keep_experts runs once", first_, first_ + local_);
  MOEGRAD_CHECK(first >= 0 && count >= 1 && first + count <= num_experts_, op,
                "cannot keep experts [{}, {}) of {}", first, first + count, num_experts_);
  for (const auto& [key, param] : key_map())
    resize_parameter(param, core::clone(core::narrow(parameter(param).value(), 0, first, count)));
  first_ = first;
  local_ = count;
}

// The per-expert keys use global expert indices (a sharded module lists its own experts).
void Experts::collect_entries(const std::string& prefix, std::vector<StateEntry>& out) const {
  for (std::int64_t i = 0; i < local_; ++i)
    for (const auto& [key, param] : key_map())
      out.push_back({fmt::format("{}experts.{}.{}", prefix, first_ + i, key), prefix + param, parameter(param), Tensor(), {i}});
}

std::string Experts::extra_repr() const {
  if (sharded())
    return fmt::format("dim={}, num_experts={}, hidden_dim={} (stacked; holds experts {}..{})", dim_, num_experts_, hidden_,
                       first_, first_ + local_ - 1);
  return fmt::format("dim={}, num_experts={}, hidden_dim={} (stacked)", dim_, num_experts_, hidden_);
}

}  // namespace moegrad::nn::st
