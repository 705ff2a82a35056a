#include "dist/local_group.h"

#include <fmt/format.h>

#include "core/ops.h"
#include "dist/validate.h"

namespace moegrad::dist {

LocalGroup::LocalGroup(std::string label, int world_rank) : label_(std::move(label)), world_ranks_{world_rank} {}

std::string LocalGroup::describe() const {
  return label_ == "world" ? std::string("world (1 rank)") : fmt::format("{} (world rank {})", label_, world_ranks_[0]);
}

std::shared_ptr<ProcessGroup> LocalGroup::split(int /*color*/, int /*key*/, const std::string& label) {
  return std::make_shared<LocalGroup>(label, world_ranks_[0]);
}

void LocalGroup::all_reduce(Tensor& t, Reduction op) {
  rows_of("all_reduce", t);
  check_reduction("all_reduce", t, op);
}

Tensor LocalGroup::all_gather(const Tensor& t) {
  rows_of("all_gather", t);
  return core::reshape(core::clone(t), with_rows(t, rows_of("all_gather", t)));
}

Tensor LocalGroup::all_to_all_v(const Tensor& t, std::span<const std::int64_t> send_rows,
                                std::span<const std::int64_t> recv_rows) {
  const std::int64_t received = check_all_to_all_args("all_to_all_v", *this, t, send_rows, recv_rows);
  MOEGRAD_CHECK(received == send_rows[0], "all_to_all_v", "{} expects {} rows from member 0 but it sends {}", describe(),
                received, send_rows[0]);
  return core::clone(t);
}

void LocalGroup::broadcast(Tensor& t, int root) {
  rows_of("broadcast", t);
  check_root("broadcast", *this, root);
}

}  // namespace moegrad::dist
