// The MoE pipeline, written once: routing -> expert rows -> dispatch -> (exchange to the ranks
// that own the experts) -> grouped GEMMs of the local experts -> (exchange back) -> combine.
// Every MoE layer runs it (MoELayer), and bench_moe times its steps one by one.
//
//   Pipeline p(g.routing, layout, placement);          // the row map, and the exchange plan
//   Variable rows = p.dispatch(tokens, scale);          // [R, d], expert-major
//   Variable local = p.exchange(rows);                  // [R_local, d], this rank's experts
//   Variable out = experts(local, p.local_offsets());   // grouped GEMMs
//   Variable back = p.exchange_back(out);               // [R, d]
//   Variable y = p.combine(back, weights);              // [T, d]
// or simply p.run(tokens, scale, weights, experts).
#pragma once
#include <functional>
#include <memory>

#include "dist/process_group.h"
#include "layers/moe/routing.h"

namespace moegrad::nn::moe {

// Where a layer's X experts live. Without a group every expert is local (first 0, count X).
// With one of P members, member p owns flat experts [first, first + count), count = X / P.
struct ExpertPlacement {
  std::shared_ptr<dist::ProcessGroup> group;
  std::int64_t total = 0, first = 0, count = 0;
  bool distributed() const { return group != nullptr && group->size() > 1; }
};

// rows [R_local, d] of the local experts, expert x (local id) owning rows offsets[x] .. offsets[x + 1] - 1.
using ExpertsFn = std::function<Variable(const Variable& rows, const Tensor& offsets)>;

class Pipeline {
 public:
  // Builds the row map and, when placement.distributed(), the exchange plan: the compact layout
  // exchanges the per-expert row counts here (a collective of the placement's group: every
  // member constructs its pipeline at the same point); the padded layout needs no exchange,
  // its counts being G / outer * capacity per expert on every member (members route the same
  // micro-batch shape).
  Pipeline(const Routing& routing, RowLayout layout, const ExpertPlacement& placement);
  const RowMap& rows() const { return rows_; }
  // tokens [T, d] -> [R, d]: each kept choice's token row times its scale (dispatch_scale).
  Variable dispatch(const Variable& tokens, const Variable& scale) const;
  // [R, d] -> [R_local, d]: rows to the members that own their experts (dist::all_to_all_v),
  // then grouped by local expert: local expert j's rows from member 0, from member 1, ...
  // (identity without expert parallelism).
  Variable exchange(const Variable& rows) const;
  const Tensor& local_offsets() const;  // i64 [count + 1] on the host
  // The inverse of exchange: [R_local, d] -> [R, d] in this rank's row order.
  Variable exchange_back(const Variable& local_rows) const;
  // [R, d] -> [T, d]: each token's rows weighted by weights [T, k] and summed.
  Variable combine(const Variable& rows, const Variable& weights) const;
  Variable run(const Variable& tokens, const Variable& scale, const Variable& weights, const ExpertsFn& experts) const;
  // Rows this rank sends to other members in exchange() (0 without expert parallelism); the
  // same rows come back in exchange_back(). Bytes = rows x d x element size, each direction.
  std::int64_t exchanged_rows() const;
  // Rows other members send here in exchange() (and receive back in exchange_back()).
  std::int64_t received_rows() const;
  const ExpertPlacement& placement() const { return placement_; }

 private:
  RowMap rows_;
  ExpertPlacement placement_;
  // The exchange plan (set when distributed): rows per destination and source member; the
  // permutation that groups received rows by local expert (local row i = received row
  // to_local_[i]) and its inverse, on the routing's device (undefined when the identity: one
  // local expert); the local offsets.
  std::vector<std::int64_t> send_rows_, recv_rows_;
  Tensor to_local_, from_local_, local_offsets_;
};

}  // namespace moegrad::nn::moe
