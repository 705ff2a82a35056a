// The helpers of process_group.h, written on the ProcessGroup interface (any backend).
#include <fmt/format.h>

#include <map>

#include "core/ops.h"
#include "dist/process_group.h"

namespace moegrad::dist {

std::vector<std::int64_t> exchange_counts(ProcessGroup& g, std::span<const std::int64_t> send, std::int64_t per_peer) {
  const auto n = static_cast<std::int64_t>(g.size());
  MOEGRAD_CHECK(per_peer >= 0 && static_cast<std::int64_t>(send.size()) == n * per_peer, "exchange_counts",
                "needs {} counts per member of {} ({} in all), got {}", per_peer, g.describe(), n * per_peer, send.size());
  if (per_peer == 0) return {};
  // One count per row, per_peer rows to each member.
  const Tensor t = core::from_vector(std::vector<std::int64_t>(send.begin(), send.end()));
  const std::vector<std::int64_t> rows(static_cast<std::size_t>(n), per_peer);
  return g.all_to_all_v(t, rows, rows).to_vector<std::int64_t>();
}

double all_reduce_value(ProcessGroup& g, double value, Reduction op) {
  Tensor t = core::from_vector(std::vector<double>{value});
  g.all_reduce(t, op);
  return t.item<double>();
}

std::int64_t all_reduce_value(ProcessGroup& g, std::int64_t value, Reduction op) {
  Tensor t = core::from_vector(std::vector<std::int64_t>{value});
  g.all_reduce(t, op);
  return t.item<std::int64_t>();
}

std::string broadcast_string(ProcessGroup& g, const std::string& text, int root) {
  const bool is_root = g.rank() == root;
  Tensor length = core::from_vector(std::vector<std::int64_t>{is_root ? static_cast<std::int64_t>(text.size()) : 0});
  g.broadcast(length, root);
  const std::int64_t n = length.item<std::int64_t>();
  Tensor bytes = core::empty_for("broadcast_string", {n}, {core::DType::u8});
  if (is_root && n > 0) std::copy(text.begin(), text.end(), bytes.data<std::uint8_t>());
  if (n > 0) g.broadcast(bytes, root);
  const auto* p = bytes.data<std::uint8_t>();
  return std::string(reinterpret_cast<const char*>(p), static_cast<std::size_t>(n));
}

namespace {
// FNV-1a: the same on every process and platform (std::hash is not).
std::int64_t stable_hash(const std::string& text) {
  std::uint64_t h = 14695981039346656037ull;
  for (unsigned char c : text) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return static_cast<std::int64_t>(h);
}
}  // namespace

void check_same(ProcessGroup& g, const std::string& what, const std::string& text) {
  const Tensor hashes = g.all_gather(core::from_vector(std::vector<std::int64_t>{stable_hash(text)}));
  const std::vector<std::int64_t> h = hashes.to_vector<std::int64_t>();
  // The most common hash is taken as the agreed one (ties: the one of the lowest rank); the
  // others are named, by world rank.
  std::map<std::int64_t, int> votes;
  for (std::int64_t v : h) ++votes[v];
  std::int64_t agreed = h[0];
  for (std::int64_t v : h)
    if (votes[v] > votes[agreed]) agreed = v;
  std::vector<int> odd, even;
  for (std::size_t r = 0; r < h.size(); ++r) (h[r] == agreed ? even : odd).push_back(g.world_ranks()[r]);
  if (odd.empty()) return;
  fail("check_same", "{} differs across {}: world rank{} {} disagree{} with world rank{} {}", what, g.describe(),
       odd.size() > 1 ? "s" : "", fmt::join(odd, ", "), odd.size() > 1 ? "" : "s", even.size() > 1 ? "s" : "",
       fmt::join(even, ", "));
}

}  // namespace moegrad::dist
