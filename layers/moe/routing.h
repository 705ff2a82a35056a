// Routing metadata of the MoE fast path (spec §9): which expert and which slot each token's
// k-th choice goes to, computed once per forward without gradient. The expert-major buffers,
// the index-based dispatch/combine and the dense dispatch/combine tensors of the originals are
// all built from it.
//
// Layout: a gating input [*outer, b, n, d] is G = prod(outer) * b groups of n tokens; token t of
// group g is row g * n + t of the flattened input; choice j of it is column j of [G * n, k].
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "autograd/variable.h"

namespace moegrad::nn::moe {

using ag::Variable;
using core::Tensor;

// The originals' capacity per (group, expert): max(min(n, int(n * cf / e)), min_capacity), with
// n * cf / e evaluated in double and truncated toward zero (spec §1).
std::int64_t expert_capacity(std::int64_t group_size, double capacity_factor, std::int64_t num_experts,
                             std::int64_t min_capacity);

// Random draws a forward would take from its generator; each defined tensor is used instead.
// Shapes are the originals' (tests inject the draws of a PyTorch run, tests/reference/README.md).
struct Draws {
  Tensor noise_uniform;         // [b, n, e]   TopNGating gate noise, U before the gumbel transform
  Tensor route_uniform;         // [k, b, n]   TopNGating routing (slice 0 unused)
  Tensor policy_uniform;        // [*outer, b, n] Top2Gating 'random' policy (HeirarchicalMoE: outer gate)
  Tensor policy_uniform_inner;  // [eo, b, co] HeirarchicalMoE inner gate
  Tensor gumbel_noise;          // [b, n, e]   MoERouter 'gumbel': the noise added to the logits
};

struct Routing {
  std::int64_t groups = 0, group_size = 0, top_k = 0, num_experts = 0, capacity = 0;
  // Groups [o * G / outer, (o + 1) * G / outer) use experts o * E ... o * E + E - 1 of a flat
  // list of outer * E experts (the inner gate of HeirarchicalMoE); 1 otherwise.
  std::int64_t outer = 1;
  // Every tensor lives on device(), the device of the gate's expert tensor: the slots are
  // assigned there (core::assign_slots), so a forward in capacity mode copies nothing to the
  // host. What needs host values (compact_rows, routing_stats) copies them when called.
  Tensor expert;      // i64 [G * n, k]: chosen expert, local id in [0, E)
  Tensor position;    // i64 [G * n, k]: slot in its (group, expert); >= capacity when dropped; -1 not routed
  Tensor padded_row;  // i64 [G * n, k]: row in the padded buffer (padded_rows) if kept, else -1
  Tensor routed;      // i64 [G, E]: routed choices per (group, local expert), before capacity
  Tensor kept;        // i64 [G, E]: choices that got a slot

  core::Device device() const { return expert.device(); }
  std::int64_t tokens() const { return groups * group_size; }
  std::int64_t total_experts() const { return outer * num_experts; }
  std::int64_t global_expert(std::int64_t group, std::int64_t local) const {
    return (group / (groups / outer)) * num_experts + local;
  }
};

// Assigns slots the way st-moe does (and lucidrains' Top2Gating for k = 2): choice-major, then
// sequence order within the group; the j-th choices of a group start after all kept choices
// 0..j-1 of the same expert; a choice is kept iff its slot < capacity. expert: i64 [G * n, k];
// active: u8 [G * n, k] (0 = not routed by policy, threshold or importance) or undefined (all).
Routing route_tokens(const Tensor& expert, const Tensor& active, std::int64_t groups, std::int64_t group_size,
                     std::int64_t num_experts, std::int64_t capacity, std::int64_t outer = 1);

// 0/1 [G * n, k] of dtype: the kept choices (the originals' mask_flat F).
Tensor kept_mask(const Routing& r, core::DType dtype);

// Where the kept choices go in the experts' row buffer: expert x (flat id) owns rows
// offsets[x] .. offsets[x + 1] - 1. row: i64 [G * n, k], -1 if not kept. Rows are distinct.
struct RowMap {
  Tensor row;      // i64 [G * n, k] on the routing's device
  Tensor offsets;  // i64 [total_experts + 1] on the host (GEMM sizes are host values)
  std::int64_t num_rows = 0;
  bool padded = false;  // padded_rows: every expert owns the same rows, known without the data
};
// Compact: only kept choices, ordered by group and slot within each expert. The row counts are
// data, so on a GPU this copies the counts to the host (a synchronisation).
RowMap compact_rows(const Routing& r);
// Padded: every expert owns G / outer * capacity rows, [X, G / outer, capacity] flattened (the
// originals' [E, G, capacity] buffer when outer = 1); empty slots are zero rows. The sizes are
// known without looking at the data, so nothing is copied to the host, and the equal groups
// make the expert GEMMs one strided-batched call.
RowMap padded_rows(const Routing& r);
// Which of the two a forward uses: automatic takes padded on a CUDA device when the padded buffer
// holds at most twice the routed choices (capacity mode), compact otherwise (CPU, where empty
// slots would cost GEMM time; dropless mode, where capacity = n).
enum class RowLayout { automatic, compact, padded };
RowMap expert_rows(const Routing& r, RowLayout layout = RowLayout::automatic);
// i64 [offsets[X]]: the expert x that owns each row of a buffer laid out by offsets i64 [X + 1].
Tensor row_experts(const Tensor& offsets);

// The dense tensors of the seed API, [G * n, E, capacity] (callers reshape): combine holds the
// weight of each kept choice at its (expert, slot), differentiable in weights [G * n, k].
// dispatch is float(combine != 0), plus combine - combine.detach() when straight_through.
Variable dense_combine(const Routing& r, const Variable& weights);
Variable dense_dispatch(const Variable& combine, bool straight_through);

// The scale the dispatch applies to each choice's input row: D's value at the choice's slot,
// float(w != 0), and with straight_through the originals' (D + C) - C.detach() so gradients reach
// the weights through the dispatch as well (spec §3.2, C5).
Variable dispatch_scale(const Variable& weights, bool straight_through);

// Per-forward routing statistics (beyond the originals).
struct RoutingStats {
  std::vector<std::int64_t> tokens_per_expert;  // kept choices per flat expert
  std::vector<std::int64_t> routed_per_expert;  // routed choices before capacity
  std::int64_t routed = 0, kept = 0;
  double dropped_fraction = 0.0;    // (routed - kept) / routed
  std::int64_t dead_experts = 0;    // experts that received nothing
  double max_load_over_mean = 0.0;  // max tokens_per_expert / mean (1 = perfectly balanced)
  std::string to_string() const;
};
RoutingStats routing_stats(const Routing& r);
// The same statistics from counts per flat expert: kept and routed choices (summed over the
// ranks of a job, say).
RoutingStats routing_stats(std::vector<std::int64_t> tokens_per_expert, std::vector<std::int64_t> routed_per_expert);

// A layer's last routing, whose statistics are computed when first asked for: on a GPU that
// copies the counts to the host, so the forward itself does not. Empty stats before a forward.
class LastRouting {
 public:
  void set(const Routing& r) {
    routing_ = r;
    stats_.reset();
  }
  const RoutingStats& stats() const;

 private:
  Routing routing_;
  mutable std::optional<RoutingStats> stats_;
};

}  // namespace moegrad::nn::moe
