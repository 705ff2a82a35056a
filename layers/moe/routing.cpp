#include "layers/moe/routing.h"

#include <fmt/format.h>

#include <algorithm>
#include <numeric>

#include "autograd/functions.h"
#include "core/checked_math.h"
#include "core/error.h"
#include "core/ops.h"

namespace moegrad::nn::moe {

using core::DType;

std::int64_t expert_capacity(std::int64_t group_size, double capacity_factor, std::int64_t num_experts,
                             std::int64_t min_capacity) {
  MOEGRAD_CHECK(group_size > 0 && num_experts > 0, "expert_capacity",
                "group size and expert count must be > 0, got {} and {}", group_size, num_experts);
  MOEGRAD_CHECK(capacity_factor > 0.0, "expert_capacity", "capacity factor must be > 0, got {}", capacity_factor);
  MOEGRAD_CHECK(min_capacity >= 1, "expert_capacity", "min_expert_capacity must be >= 1, got {}", min_capacity);
  // Python: int((n * cf) / e) -- double arithmetic, truncation toward zero. Compared with n in
  // double first: a value past int64 (a huge or infinite factor) has no defined cast.
  const double scaled = (static_cast<double>(group_size) * capacity_factor) / static_cast<double>(num_experts);
  const std::int64_t capped = scaled >= static_cast<double>(group_size) ? group_size : static_cast<std::int64_t>(scaled);
  return std::max(capped, min_capacity);
}

Routing route_tokens(const Tensor& expert, const Tensor& active, std::int64_t groups, std::int64_t group_size,
                     std::int64_t num_experts, std::int64_t capacity, std::int64_t outer) {
  const char* op = "route_tokens";
  const std::int64_t tokens = core::checked_mul(op, "groups * group_size", groups, group_size);
  MOEGRAD_CHECK(expert.dtype() == DType::i64 && expert.dim() == 2 && expert.size(0) == tokens, op,
                "expert must be i64 [G * n = {}, k], got {}", tokens, core::describe(expert));
  MOEGRAD_CHECK(capacity >= 1 && outer >= 1 && groups % outer == 0, op,
                "need capacity >= 1 and groups ({}) divisible by outer ({}), got capacity {}", groups, outer, capacity);
  Routing r;
  r.groups = groups;
  r.group_size = group_size;
  r.top_k = expert.size(1);
  r.num_experts = num_experts;
  r.capacity = capacity;
  r.outer = outer;
  r.expert = core::contiguous(expert);
  core::SlotAssignment s = core::assign_slots(r.expert, active, groups, num_experts, capacity, outer);
  r.position = std::move(s.position);
  r.padded_row = std::move(s.padded_row);
  r.routed = std::move(s.routed);
  r.kept = std::move(s.kept);
  return r;
}

Tensor kept_mask(const Routing& r, DType dtype) { return core::to_dtype(core::ge(r.padded_row, 0.0), dtype); }

RowMap compact_rows(const Routing& r) {
  const std::int64_t X = r.total_experts(), E = r.num_experts, k = r.top_k;
  const core::Device host = core::Device::cpu();
  const Tensor kept = core::contiguous(core::to_device(r.kept, host));  // [G, E]
  const Tensor position = core::contiguous(core::to_device(r.position, host));
  const Tensor expert = core::contiguous(core::to_device(r.expert, host));
  const std::int64_t* kp = kept.data<std::int64_t>();
  // start[g * E + e]: first row of group g's slots for its expert e.
  std::vector<std::int64_t> per_expert(static_cast<std::size_t>(X), 0);
  for (std::int64_t g = 0; g < r.groups; ++g)
    for (std::int64_t e = 0; e < E; ++e) per_expert[r.global_expert(g, e)] += kp[g * E + e];
  RowMap m;
  m.offsets = core::empty({X + 1}, {DType::i64});
  std::int64_t* off = m.offsets.data<std::int64_t>();
  off[0] = 0;
  for (std::int64_t x = 0; x < X; ++x) off[x + 1] = off[x] + per_expert[x];
  m.num_rows = off[X];
  std::vector<std::int64_t> cursor(off, off + X);
  std::vector<std::int64_t> start(static_cast<std::size_t>(r.groups * E));
  for (std::int64_t g = 0; g < r.groups; ++g)
    for (std::int64_t e = 0; e < E; ++e) {
      const std::int64_t x = r.global_expert(g, e);
      start[g * E + e] = cursor[x];
      cursor[x] += kp[g * E + e];
    }
  m.row = core::full(r.position.shape(), -1.0, {DType::i64});
  std::int64_t* row = m.row.data<std::int64_t>();
  const std::int64_t* pos = position.data<std::int64_t>();
  const std::int64_t* ex = expert.data<std::int64_t>();
  for (std::int64_t i = 0; i < position.numel(); ++i) {
    if (pos[i] < 0 || pos[i] >= r.capacity) continue;
    const std::int64_t g = i / k / r.group_size;
    row[i] = start[g * E + ex[i]] + pos[i];
  }
  m.row = core::to_device(m.row, r.device());
  return m;
}

RowMap padded_rows(const Routing& r) {
  RowMap m;
  const std::int64_t X = r.total_experts(), per_expert = r.groups / r.outer * r.capacity;
  m.num_rows = X * per_expert;
  m.offsets = core::empty({X + 1}, {DType::i64});
  std::int64_t* off = m.offsets.data<std::int64_t>();
  for (std::int64_t x = 0; x <= X; ++x) off[x] = x * per_expert;
  m.row = r.padded_row;  // assign_slots already placed the kept choices there
  m.padded = true;
  return m;
}

RowMap expert_rows(const Routing& r, RowLayout layout) {
  if (layout == RowLayout::automatic)
    layout = r.device().is_cuda() && r.num_experts * r.capacity <= 2 * r.group_size * r.top_k ? RowLayout::padded
                                                                                         : RowLayout::compact;
  return layout == RowLayout::padded ? padded_rows(r) : compact_rows(r);
}

Tensor row_experts(const Tensor& offsets) {
  const Tensor offs = core::contiguous(core::to_device(offsets, core::Device::cpu()));
  const std::int64_t X = offs.numel() - 1;
  const std::int64_t* off = offs.data<std::int64_t>();
  Tensor out = core::empty({off[X]}, {DType::i64});
  std::int64_t* o = out.data<std::int64_t>();
  for (std::int64_t x = 0; x < X; ++x) std::fill(o + off[x], o + off[x + 1], x);
  return out;
}

Variable dense_combine(const Routing& r, const Variable& weights) {
  const std::int64_t T = r.tokens(), E = r.num_experts, c = r.capacity, k = r.top_k;
  MOEGRAD_CHECK(weights.shape() == core::Shape({T, k}), "dense_combine", "weights must be [{}, {}], got {}", T, k,
                core::describe(weights.value()));
  // Each choice scatters its weight to (expert, slot); dropped and unrouted choices have weight 0
  // and land on slot 0 of their expert, which no other choice of the same token uses.
  const Tensor slot = core::where(core::ge(r.padded_row, 0.0), r.position, core::zeros_like(r.position));
  const Tensor index = core::add(core::mul(r.expert, static_cast<double>(c)), slot);
  Variable zeros = ag::constant(core::zeros({T, E * c}, {weights.dtype(), weights.value().device()}));
  Variable kept = ag::mul(weights, ag::constant(kept_mask(r, weights.dtype())));
  return ag::reshape(ag::scatter_add(zeros, 1, index, kept), {T, E, c});
}

Variable dense_dispatch(const Variable& combine, bool straight_through) {
  Variable mask = ag::constant(core::to_dtype(core::ne(combine.value(), 0.0), combine.dtype()));
  if (!straight_through) return mask;
  return ag::sub(ag::add(mask, combine), ag::constant(combine.value()));
}

Variable dispatch_scale(const Variable& weights, bool straight_through) { return dense_dispatch(weights, straight_through); }

RoutingStats routing_stats(std::vector<std::int64_t> tokens_per_expert, std::vector<std::int64_t> routed_per_expert) {
  RoutingStats s;
  s.tokens_per_expert = std::move(tokens_per_expert);
  s.routed_per_expert = std::move(routed_per_expert);
  s.kept = std::accumulate(s.tokens_per_expert.begin(), s.tokens_per_expert.end(), std::int64_t{0});
  s.routed = std::accumulate(s.routed_per_expert.begin(), s.routed_per_expert.end(), std::int64_t{0});
  s.dropped_fraction = s.routed > 0 ? static_cast<double>(s.routed - s.kept) / static_cast<double>(s.routed) : 0.0;
  s.dead_experts = std::count(s.tokens_per_expert.begin(), s.tokens_per_expert.end(), 0);
  if (s.tokens_per_expert.empty()) return s;
  const double mean = static_cast<double>(s.kept) / static_cast<double>(s.tokens_per_expert.size());
  const auto mx = *std::max_element(s.tokens_per_expert.begin(), s.tokens_per_expert.end());
  s.max_load_over_mean = mean > 0.0 ? static_cast<double>(mx) / mean : 0.0;
  return s;
}

RoutingStats routing_stats(const Routing& r) {
  const std::int64_t X = r.total_experts();
  std::vector<std::int64_t> tokens(static_cast<std::size_t>(X), 0), routed_per_expert(static_cast<std::size_t>(X), 0);
  const std::vector<std::int64_t> kept = r.kept.to_vector<std::int64_t>();  // [G, E], copied to the host
  const std::vector<std::int64_t> routed = r.routed.to_vector<std::int64_t>();
  for (std::int64_t g = 0; g < r.groups; ++g)
    for (std::int64_t e = 0; e < r.num_experts; ++e) {
      tokens[r.global_expert(g, e)] += kept[g * r.num_experts + e];
      routed_per_expert[r.global_expert(g, e)] += routed[g * r.num_experts + e];
    }
  return routing_stats(std::move(tokens), std::move(routed_per_expert));
}

const RoutingStats& LastRouting::stats() const {
  if (!stats_) stats_ = routing_.kept.defined() ? routing_stats(routing_) : RoutingStats{};
  return *stats_;
}

std::string RoutingStats::to_string() const {
  return fmt::format("tokens per expert [{}], dropped {:.1f}%, dead experts {}, max load / mean {:.2f}",
                     fmt::join(tokens_per_expert, ", "), 100.0 * dropped_fraction, dead_experts, max_load_over_mean);
}

}  // namespace moegrad::nn::moe
