#include "layers/moe/pipeline.h"

#include <numeric>

#include "autograd/functions.h"
#include "core/error.h"
#include "core/ops.h"
#include "dist/autograd_collectives.h"

namespace moegrad::nn::moe {

namespace {
constexpr const char* kOp = "moe.Pipeline";

std::int64_t others(const std::vector<std::int64_t>& rows, int self) {
  std::int64_t n = 0;
  for (std::size_t q = 0; q < rows.size(); ++q)
    if (static_cast<int>(q) != self) n += rows[q];
  return n;
}
}  // namespace

Pipeline::Pipeline(const Routing& routing, RowLayout layout, const ExpertPlacement& placement)
    : rows_(expert_rows(routing, layout)), placement_(placement) {
  const std::int64_t X = rows_.offsets.numel() - 1;
  if (!placement_.distributed()) {
    placement_.total = placement_.count = X;
    placement_.first = 0;
    return;
  }
  dist::ProcessGroup& g = *placement_.group;
  const std::int64_t P = g.size(), me = g.rank(), L = placement_.count;
  MOEGRAD_CHECK(placement_.total == X && L * P == X && placement_.first == me * L, kOp,
                "placement of experts [{}, {}) of {} over {} does not fit the routing's {} experts", placement_.first,
                placement_.first + L, placement_.total, g.describe(), X);
  const std::vector<std::int64_t> off = rows_.offsets.to_vector<std::int64_t>();
  // Expert-major rows: member q's experts [q L, (q + 1) L) are one contiguous block.
  std::vector<std::int64_t> per_expert(static_cast<std::size_t>(X));
  for (std::int64_t x = 0; x < X; ++x) per_expert[x] = off[x + 1] - off[x];
  send_rows_.resize(static_cast<std::size_t>(P));
  for (std::int64_t q = 0; q < P; ++q) send_rows_[q] = off[(q + 1) * L] - off[q * L];
  // recv[s * L + j]: rows member s sends for local expert j.
  const std::vector<std::int64_t> recv =
      rows_.padded ? std::vector<std::int64_t>(static_cast<std::size_t>(P * L), X > 0 ? per_expert[0] : 0)
                   : dist::exchange_counts(g, per_expert, L);
  recv_rows_.assign(static_cast<std::size_t>(P), 0);
  std::vector<std::int64_t> start(recv.size());  // first received row of block (s, j)
  std::int64_t total = 0;
  for (std::int64_t s = 0; s < P; ++s)
    for (std::int64_t j = 0; j < L; ++j) {
      start[s * L + j] = total;
      total += recv[s * L + j];
      recv_rows_[s] += recv[s * L + j];
    }
  // Local order [local expert][source]: each local expert's rows are one block for the GEMMs.
  local_offsets_ = core::empty({L + 1}, {core::DType::i64});
  std::int64_t* lo = local_offsets_.data<std::int64_t>();
  lo[0] = 0;
  if (L > 1) {
    to_local_ = core::empty({total}, {core::DType::i64});
    from_local_ = core::empty({total}, {core::DType::i64});
  }
  std::int64_t i = 0;
  for (std::int64_t j = 0; j < L; ++j) {
    for (std::int64_t s = 0; s < P; ++s)
      for (std::int64_t r = 0; r < recv[s * L + j]; ++r, ++i) {
        if (L == 1) continue;  // the received order already is the local order
        to_local_.data<std::int64_t>()[i] = start[s * L + j] + r;
        from_local_.data<std::int64_t>()[start[s * L + j] + r] = i;
      }
    lo[j + 1] = i;
  }
  if (L > 1) {
    to_local_ = core::to_device(to_local_, routing.device());
    from_local_ = core::to_device(from_local_, routing.device());
  }
}

Variable Pipeline::dispatch(const Variable& tokens, const Variable& scale) const {
  MOEGRAD_CHECK(tokens.dim() == 2, kOp, "dispatch takes tokens [T, d], got {}", core::describe(tokens.value()));
  return ag::dispatch_rows(tokens, rows_.row, scale, rows_.num_rows);
}

Variable Pipeline::exchange(const Variable& rows) const {
  MOEGRAD_CHECK(rows.dim() == 2 && rows.size(0) == rows_.num_rows, kOp, "exchange takes the dispatched rows [{}, d], got {}",
                rows_.num_rows, core::describe(rows.value()));
  if (!placement_.distributed()) return rows;
  Variable received = dist::all_to_all_v(rows, placement_.group, send_rows_, recv_rows_);
  return to_local_.defined() ? ag::index_select(received, 0, to_local_) : received;
}

const Tensor& Pipeline::local_offsets() const { return placement_.distributed() ? local_offsets_ : rows_.offsets; }

Variable Pipeline::exchange_back(const Variable& local_rows) const {
  const std::int64_t local = placement_.distributed() ? std::accumulate(recv_rows_.begin(), recv_rows_.end(), std::int64_t{0})
                                                      : rows_.num_rows;
  MOEGRAD_CHECK(local_rows.dim() == 2 && local_rows.size(0) == local, kOp,
                "exchange_back takes the local experts' rows [{}, d], got {}", local, core::describe(local_rows.value()));
  if (!placement_.distributed()) return local_rows;
  Variable received_order = from_local_.defined() ? ag::index_select(local_rows, 0, from_local_) : local_rows;
  return dist::all_to_all_v(received_order, placement_.group, recv_rows_, send_rows_);
}

Variable Pipeline::combine(const Variable& rows, const Variable& weights) const {
  return ag::combine_rows(rows, rows_.row, weights, /*distinct_rows=*/true);
}

Variable Pipeline::run(const Variable& tokens, const Variable& scale, const Variable& weights,
                       const ExpertsFn& experts) const {
  Variable local = exchange(dispatch(tokens, scale));
  return combine(exchange_back(experts(local, local_offsets())), weights);
}

std::int64_t Pipeline::exchanged_rows() const { return placement_.distributed() ? others(send_rows_, placement_.group->rank()) : 0; }

std::int64_t Pipeline::received_rows() const { return placement_.distributed() ? others(recv_rows_, placement_.group->rank()) : 0; }

}  // namespace moegrad::nn::moe
