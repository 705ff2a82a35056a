#include "layers/moe/routing.h"

#include <fmt/format.h>

#include <algorithm>
#include <numeric>

#include "autograd/functions.h"
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
  // Python: int((n * cf) / e) -- double arithmetic, truncation toward zero.
  const auto scaled = static_cast<std::int64_t>((static_cast<double>(group_size) * capacity_factor) /
                                                static_cast<double>(num_experts));
  return std::max(std::min(group_size, scaled), min_capacity);
}

Routing route_tokens(const Tensor& expert, const Tensor& active, std::int64_t groups, std::int64_t group_size,
                     std::int64_t num_experts, std::int64_t capacity, std::int64_t outer) {
  const char* op = "route_tokens";
  MOEGRAD_CHECK(expert.dtype() == DType::i64 && expert.dim() == 2 && expert.size(0) == groups * group_size, op,
                "expert must be i64 [G * n = {}, k], got {}", groups * group_size, core::describe(expert));
  MOEGRAD_CHECK(capacity >= 1 && outer >= 1 && groups % outer == 0, op,
                "need capacity >= 1 and groups ({}) divisible by outer ({}), got capacity {}", groups, outer, capacity);
  Routing r;
  r.groups = groups;
  r.group_size = group_size;
  r.top_k = expert.size(1);
  r.num_experts = num_experts;
  r.capacity = capacity;
  r.outer = outer;
  r.device = expert.device();
  r.expert = core::contiguous(core::to_device(expert, core::Device::cpu()));
  Tensor act;
  if (active.defined()) {
    MOEGRAD_CHECK(active.dtype() == DType::u8 && active.shape() == expert.shape(), op,
                  "active must be u8 with expert's shape {}, got {}", core::shape_str(expert.shape()),
                  core::describe(active));
    act = core::contiguous(core::to_device(active, core::Device::cpu()));
  }
  r.position = core::full(expert.shape(), -1.0, {DType::i64});
  r.routed.assign(static_cast<std::size_t>(groups * num_experts), 0);
  r.kept.assign(r.routed.size(), 0);

  const std::int64_t k = r.top_k;
  const std::int64_t* ex = r.expert.data<std::int64_t>();
  const std::uint8_t* on = act.defined() ? act.data<std::uint8_t>() : nullptr;
  std::int64_t* pos = r.position.data<std::int64_t>();
  for (std::int64_t i = 0; i < expert.numel(); ++i)
    MOEGRAD_CHECK(ex[i] >= 0 && ex[i] < num_experts, op, "expert id {} out of range [0, {})", ex[i], num_experts);

  // Choice-major: all j-th choices of a group (in sequence order) before any (j+1)-th; the
  // j-th choices of expert e start after the kept choices 0..j-1 of e (st-moe's cumulative
  // offset, spec §3.2; lucidrains' Top2Gating is the k = 2 case).
  std::vector<std::int64_t> taken(static_cast<std::size_t>(num_experts));
  for (std::int64_t g = 0; g < groups; ++g) {
    std::int64_t* kept_g = r.kept.data() + g * num_experts;
    std::int64_t* routed_g = r.routed.data() + g * num_experts;
    for (std::int64_t j = 0; j < k; ++j) {
      std::copy(kept_g, kept_g + num_experts, taken.begin());  // base = kept of choices < j
      for (std::int64_t t = 0; t < group_size; ++t) {
        const std::int64_t i = (g * group_size + t) * k + j;
        if (on && !on[i]) continue;
        const std::int64_t e = ex[i];
        const std::int64_t slot = taken[e]++;
        pos[i] = slot;
        ++routed_g[e];
        if (slot < capacity) ++kept_g[e];
      }
    }
  }
  return r;
}

Tensor kept_mask(const Routing& r, DType dtype) {
  Tensor f = core::zeros(r.position.shape(), {DType::f64});
  const std::int64_t* pos = r.position.data<std::int64_t>();
  double* out = f.data<double>();
  for (std::int64_t i = 0; i < f.numel(); ++i) out[i] = (pos[i] >= 0 && pos[i] < r.capacity) ? 1.0 : 0.0;
  return core::to_device(core::to_dtype(f, dtype), r.device);
}

RowMap compact_rows(const Routing& r) {
  const std::int64_t X = r.total_experts(), E = r.num_experts, k = r.top_k;
  // start[g * E + e]: first row of group g's slots for its expert e.
  std::vector<std::int64_t> per_expert(static_cast<std::size_t>(X), 0);
  for (std::int64_t g = 0; g < r.groups; ++g)
    for (std::int64_t e = 0; e < E; ++e) per_expert[r.global_expert(g, e)] += r.kept[g * E + e];
  RowMap m;
  m.offsets = core::empty({X + 1}, {DType::i64});
  std::int64_t* off = m.offsets.data<std::int64_t>();
  off[0] = 0;
  for (std::int64_t x = 0; x < X; ++x) off[x + 1] = off[x] + per_expert[x];
  m.num_rows = off[X];
  std::vector<std::int64_t> cursor(off, off + X);
  std::vector<std::int64_t> start(r.kept.size());
  for (std::int64_t g = 0; g < r.groups; ++g)
    for (std::int64_t e = 0; e < E; ++e) {
      const std::int64_t x = r.global_expert(g, e);
      start[g * E + e] = cursor[x];
      cursor[x] += r.kept[g * E + e];
    }
  m.row = core::full(r.position.shape(), -1.0, {DType::i64});
  std::int64_t* row = m.row.data<std::int64_t>();
  const std::int64_t* pos = r.position.data<std::int64_t>();
  const std::int64_t* ex = r.expert.data<std::int64_t>();
  for (std::int64_t i = 0; i < r.position.numel(); ++i) {
    if (pos[i] < 0 || pos[i] >= r.capacity) continue;
    const std::int64_t g = i / k / r.group_size;
    row[i] = start[g * E + ex[i]] + pos[i];
  }
  m.row = core::to_device(m.row, r.device);
  return m;
}

RowMap padded_rows(const Routing& r) {
  MOEGRAD_CHECK(r.outer == 1, "padded_rows", "needs a routing without outer expert dims, got outer = {}", r.outer);
  RowMap m;
  m.num_rows = r.num_experts * r.groups * r.capacity;
  m.offsets = core::empty({r.num_experts + 1}, {DType::i64});
  std::int64_t* off = m.offsets.data<std::int64_t>();
  for (std::int64_t e = 0; e <= r.num_experts; ++e) off[e] = e * r.groups * r.capacity;
  m.row = core::full(r.position.shape(), -1.0, {DType::i64});
  std::int64_t* row = m.row.data<std::int64_t>();
  const std::int64_t* pos = r.position.data<std::int64_t>();
  const std::int64_t* ex = r.expert.data<std::int64_t>();
  for (std::int64_t i = 0; i < r.position.numel(); ++i) {
    if (pos[i] < 0 || pos[i] >= r.capacity) continue;
    const std::int64_t g = i / r.top_k / r.group_size;
    row[i] = (ex[i] * r.groups + g) * r.capacity + pos[i];
  }
  m.row = core::to_device(m.row, r.device);
  return m;
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
  Tensor index = core::empty({T, k}, {DType::i64});
  const std::int64_t* pos = r.position.data<std::int64_t>();
  const std::int64_t* ex = r.expert.data<std::int64_t>();
  std::int64_t* idx = index.data<std::int64_t>();
  for (std::int64_t i = 0; i < T * k; ++i) idx[i] = ex[i] * c + ((pos[i] >= 0 && pos[i] < c) ? pos[i] : 0);
  Variable zeros = ag::constant(core::zeros({T, E * c}, {weights.dtype(), weights.value().device()}));
  Variable kept = ag::mul(weights, ag::constant(kept_mask(r, weights.dtype())));
  return ag::reshape(ag::scatter_add(zeros, 1, core::to_device(index, r.device), kept), {T, E, c});
}

Variable dense_dispatch(const Variable& combine, bool straight_through) {
  Variable mask = ag::constant(core::to_dtype(core::ne(combine.value(), 0.0), combine.dtype()));
  if (!straight_through) return mask;
  return ag::sub(ag::add(mask, combine), ag::constant(combine.value()));
}

Variable dispatch_scale(const Variable& weights, bool straight_through) { return dense_dispatch(weights, straight_through); }

RoutingStats routing_stats(const Routing& r) {
  RoutingStats s;
  const std::int64_t X = r.total_experts();
  s.tokens_per_expert.assign(static_cast<std::size_t>(X), 0);
  s.routed_per_expert.assign(static_cast<std::size_t>(X), 0);
  for (std::int64_t g = 0; g < r.groups; ++g)
    for (std::int64_t e = 0; e < r.num_experts; ++e) {
      s.tokens_per_expert[r.global_expert(g, e)] += r.kept[g * r.num_experts + e];
      s.routed_per_expert[r.global_expert(g, e)] += r.routed[g * r.num_experts + e];
    }
  s.kept = std::accumulate(s.tokens_per_expert.begin(), s.tokens_per_expert.end(), std::int64_t{0});
  s.routed = std::accumulate(s.routed_per_expert.begin(), s.routed_per_expert.end(), std::int64_t{0});
  s.dropped_fraction = s.routed > 0 ? static_cast<double>(s.routed - s.kept) / static_cast<double>(s.routed) : 0.0;
  s.dead_experts = std::count(s.tokens_per_expert.begin(), s.tokens_per_expert.end(), 0);
  const double mean = static_cast<double>(s.kept) / static_cast<double>(X);
  const auto mx = *std::max_element(s.tokens_per_expert.begin(), s.tokens_per_expert.end());
  s.max_load_over_mean = mean > 0.0 ? static_cast<double>(mx) / mean : 0.0;
  return s;
}

std::string RoutingStats::to_string() const {
  return fmt::format("tokens per expert [{}], dropped {:.1f}%, dead experts {}, max load / mean {:.2f}",
                     fmt::join(tokens_per_expert, ", "), 100.0 * dropped_fraction, dead_experts, max_load_over_mean);
}

}  // namespace moegrad::nn::moe
