// The collectives across ranks: values each rank computes from its own rank, checked on every
// rank against what the other ranks must have sent (no timing, any world size).
#include <doctest/doctest.h>

#include <numeric>
#include <thread>

#include "core/ops.h"
#include "dist/world.h"

namespace core = moegrad::core;
namespace dist = moegrad::dist;
using core::DType;
using core::Tensor;

namespace {
// Rank r's input element i: distinct per rank, negative for odd i.
double value_of(int r, int i) { return (r + 1) * (i % 2 ? -1.0 : 1.0) + 10.0 * i; }

template <class T>
Tensor rank_tensor(int r, DType d) {
  std::vector<T> v;
  for (int i = 0; i < 6; ++i) v.push_back(static_cast<T>(value_of(r, i)));
  return core::to_dtype(core::from_vector(v, {2, 3}), d);
}

// Rows rank p sends to rank q: rank 0 sends nothing, some pairs none, others 1 or 2.
std::int64_t rows_from_to(int p, int q) { return p == 0 ? 0 : (p + 2 * q) % 3; }
double row_value(int p, int q, std::int64_t i, int col) { return 1000.0 * p + 100.0 * q + 10.0 * i + col; }

// Rank me's rows for every member (dim 1 = 2 columns).
Tensor send_tensor(int me, int n, std::vector<std::int64_t>& send_rows) {
  std::vector<double> v;
  send_rows.clear();
  for (int q = 0; q < n; ++q) {
    send_rows.push_back(rows_from_to(me, q));
    for (std::int64_t i = 0; i < rows_from_to(me, q); ++i)
      for (int c = 0; c < 2; ++c) v.push_back(row_value(me, q, i, c));
  }
  const auto rows = static_cast<std::int64_t>(v.size() / 2);
  return core::from_vector(v, {rows, 2});
}
}  // namespace

TEST_CASE("dist: the world is the mpirun job") {
  dist::ProcessGroup& w = dist::world();
  CHECK(w.size() == dist::launched_size());
  CHECK(w.rank() >= 0);
  CHECK(w.rank() < w.size());
  REQUIRE(w.world_ranks().size() == static_cast<std::size_t>(w.size()));
  for (int q = 0; q < w.size(); ++q) CHECK(w.world_ranks()[static_cast<std::size_t>(q)] == q);
  CHECK(w.describe() == fmt::format("world ({} rank{})", w.size(), w.size() == 1 ? "" : "s"));
  w.barrier();
}

TEST_CASE_TEMPLATE("dist: all_reduce sum, max and min", T, float, double, std::int64_t) {
  dist::ProcessGroup& w = dist::world();
  const DType d = core::dtype_of<T>();
  for (dist::Reduction op : {dist::Reduction::sum, dist::Reduction::max, dist::Reduction::min}) {
    Tensor t = rank_tensor<T>(w.rank(), d);
    w.all_reduce(t, op);
    const std::vector<T> got = t.to_vector<T>();
    for (int i = 0; i < 6; ++i) {
      T want = static_cast<T>(value_of(0, i));
      for (int q = 1; q < w.size(); ++q) {
        const T v = static_cast<T>(value_of(q, i));
        want = op == dist::Reduction::sum ? static_cast<T>(want + v) : op == dist::Reduction::max ? std::max(want, v) : std::min(want, v);
      }
      CHECK(got[static_cast<std::size_t>(i)] == want);
    }
  }
}

TEST_CASE("dist: all_reduce on b8 (max is any, min is all) and u8") {
  dist::ProcessGroup& w = dist::world();
  // Element 0 true on rank 0 only, element 1 true everywhere, element 2 nowhere.
  const std::vector<std::uint8_t> mine{w.rank() == 0, 1, 0};
  const Tensor flags = core::to_dtype(core::from_vector(mine), DType::b8);
  Tensor any = core::clone(flags), all = core::clone(flags);
  w.all_reduce(any, dist::Reduction::max);
  w.all_reduce(all, dist::Reduction::min);
  REQUIRE(any.dtype() == DType::b8);
  CHECK(any.to_vector<std::int64_t>() == std::vector<std::int64_t>{1, 1, 0});
  CHECK(all.to_vector<std::int64_t>() == std::vector<std::int64_t>{w.size() == 1, 1, 0});
  Tensor bytes = core::full({4}, 3.0, {DType::u8});
  w.all_reduce(bytes, dist::Reduction::sum);
  CHECK(bytes.to_vector<std::int64_t>() == std::vector<std::int64_t>(4, 3 * w.size()));
}

TEST_CASE("dist: all_reduce of a non-contiguous view writes through it") {
  dist::ProcessGroup& w = dist::world();
  Tensor base = rank_tensor<double>(w.rank(), DType::f64);  // [2, 3]
  Tensor view = core::transpose(base, 0, 1);                // [3, 2], strided
  w.all_reduce(view, dist::Reduction::sum);
  const std::vector<double> got = base.to_vector<double>();
  for (int i = 0; i < 6; ++i) {
    double want = 0;
    for (int q = 0; q < w.size(); ++q) want += value_of(q, i);
    CHECK(got[static_cast<std::size_t>(i)] == want);
  }
}

TEST_CASE("dist: all_gather concatenates every rank's rows in rank order") {
  dist::ProcessGroup& w = dist::world();
  const Tensor mine = rank_tensor<double>(w.rank(), DType::f64);  // [2, 3]
  const Tensor all = w.all_gather(mine);
  REQUIRE(all.shape() == core::Shape{2 * w.size(), 3});
  const std::vector<double> got = all.to_vector<double>();
  for (int q = 0; q < w.size(); ++q)
    for (int i = 0; i < 6; ++i) CHECK(got[static_cast<std::size_t>(q * 6 + i)] == value_of(q, i));
  // i64 scalars: one row per rank.
  const Tensor ranks = w.all_gather(core::from_vector(std::vector<std::int64_t>{10 + w.rank()}));
  std::vector<std::int64_t> want;
  for (int q = 0; q < w.size(); ++q) want.push_back(10 + q);
  CHECK(ranks.to_vector<std::int64_t>() == want);
}

TEST_CASE("dist: broadcast from the last rank") {
  dist::ProcessGroup& w = dist::world();
  const int root = w.size() - 1;
  Tensor f = rank_tensor<float>(w.rank(), DType::f32);
  w.broadcast(f, root);
  CHECK(f.to_vector<float>() == rank_tensor<float>(root, DType::f32).to_vector<float>());
  Tensor bytes = core::full({5}, 7.0 + w.rank(), {DType::u8});
  w.broadcast(bytes, root);
  CHECK(bytes.to_vector<std::int64_t>() == std::vector<std::int64_t>(5, 7 + root));
}

TEST_CASE("dist: all_to_all_v with uneven counts, zero rows and a rank that sends nothing") {
  dist::ProcessGroup& w = dist::world();
  const int me = w.rank(), n = w.size();
  std::vector<std::int64_t> send_rows;
  const Tensor x = send_tensor(me, n, send_rows);
  // The receive counts from the exchange of counts, and as every rank can compute them.
  const std::vector<std::int64_t> recv_rows = dist::exchange_counts(w, send_rows, 1);
  for (int q = 0; q < n; ++q) CHECK(recv_rows[static_cast<std::size_t>(q)] == rows_from_to(q, me));
  const Tensor y = w.all_to_all_v(x, send_rows, recv_rows);
  std::vector<double> want;
  for (int q = 0; q < n; ++q)
    for (std::int64_t i = 0; i < rows_from_to(q, me); ++i)
      for (int c = 0; c < 2; ++c) want.push_back(row_value(q, me, i, c));
  CHECK(y.shape() == core::Shape{static_cast<std::int64_t>(want.size() / 2), 2});
  CHECK(y.to_vector<double>() == want);
  // A round where nobody sends anything.
  const std::vector<std::int64_t> none(static_cast<std::size_t>(n), 0);
  const Tensor empty = w.all_to_all_v(core::zeros({0, 4}), none, none);
  CHECK(empty.shape() == core::Shape{0, 4});
}

TEST_CASE("dist: exchange_counts with several counts per peer") {
  dist::ProcessGroup& w = dist::world();
  const int me = w.rank(), n = w.size();
  std::vector<std::int64_t> send;
  for (int q = 0; q < n; ++q)
    for (int e = 0; e < 3; ++e) send.push_back(100 * me + 10 * q + e);
  const std::vector<std::int64_t> got = dist::exchange_counts(w, send, 3);
  REQUIRE(got.size() == static_cast<std::size_t>(3 * n));
  for (int q = 0; q < n; ++q)
    for (int e = 0; e < 3; ++e) CHECK(got[static_cast<std::size_t>(3 * q + e)] == 100 * q + 10 * me + e);
  CHECK_THROWS_WITH_AS(dist::exchange_counts(w, std::vector<std::int64_t>(static_cast<std::size_t>(n) + 1), 1),
                       doctest::Contains("[exchange_counts] needs 1 counts per member"), moegrad::Error);
}

TEST_CASE("dist: split into sub-groups by rank / 2 and by rank % 2") {
  dist::ProcessGroup& w = dist::world();
  const int me = w.rank(), n = w.size();
  // Pairs: {0, 1}, {2, 3}, ...
  auto pair = w.split(me / 2, me, "expert-parallel group " + std::to_string(me / 2));
  std::vector<int> members;
  for (int q = 0; q < n; ++q)
    if (q / 2 == me / 2) members.push_back(q);
  CHECK(pair->world_ranks() == members);
  CHECK(pair->size() == static_cast<int>(members.size()));
  CHECK(pair->rank() == me % 2);
  if (members.size() > 1)
    CHECK(pair->describe() == fmt::format("expert-parallel group {} (world ranks {})", me / 2, fmt::join(members, ", ")));
  CHECK(dist::all_reduce_value(*pair, std::int64_t{me}, dist::Reduction::sum) ==
        std::accumulate(members.begin(), members.end(), std::int64_t{0}));
  // Strided: {0, 2, ...} and {1, 3, ...}, ordered by a descending key.
  auto strided = w.split(me % 2, -me, "data-parallel group");
  std::vector<int> same;
  for (int q = n - 1; q >= 0; --q)
    if (q % 2 == me % 2) same.push_back(q);
  CHECK(strided->world_ranks() == same);
  const Tensor gathered = strided->all_gather(core::from_vector(std::vector<std::int64_t>{me}));
  CHECK(gathered.to_vector<std::int64_t>() == std::vector<std::int64_t>(same.begin(), same.end()));
  // An exchange inside the sub-group: one row (this rank's world rank) to each member.
  const auto k = static_cast<std::size_t>(strided->size());
  const std::vector<std::int64_t> ones(k, 1);
  const Tensor y = strided->all_to_all_v(core::full({static_cast<std::int64_t>(k), 1}, me, {DType::i64}), ones, ones);
  CHECK(y.to_vector<std::int64_t>() == std::vector<std::int64_t>(same.begin(), same.end()));
  // Collectives on both groups interleave without mixing.
  Tensor a = core::full({3}, 1.0), b = core::full({3}, 2.0);
  pair->all_reduce(a);
  strided->all_reduce(b);
  CHECK(a.to_vector<double>() == std::vector<double>(3, static_cast<double>(members.size())));
  CHECK(b.to_vector<double>() == std::vector<double>(3, 2.0 * static_cast<double>(same.size())));
}

TEST_CASE("dist: broadcast_string") {
  dist::ProcessGroup& w = dist::world();
  const int root = w.size() - 1;
  CHECK(dist::broadcast_string(w, "text of rank " + std::to_string(w.rank()), root) == "text of rank " + std::to_string(root));
  CHECK(dist::broadcast_string(w, w.rank() == 0 ? "" : "not empty", 0).empty());
}

TEST_CASE("dist: check_same passes when every rank agrees and names the ranks that do not") {
  dist::ProcessGroup& w = dist::world();
  CHECK_NOTHROW(dist::check_same(w, "the model config", "{\"dim\": 8}"));
  if (w.size() < 2) return;
  const std::string text = w.rank() == 1 ? "{\"dim\": 16}" : "{\"dim\": 8}";
  std::vector<int> agree;
  for (int q = 0; q < w.size(); ++q)
    if (q != 1) agree.push_back(q);
  const std::string want = fmt::format("[check_same] the model config differs across {}: world rank 1 disagrees with world rank{} {}",
                                       w.describe(), agree.size() > 1 ? "s" : "", fmt::join(agree, ", "));
  CHECK_THROWS_WITH_AS(dist::check_same(w, "the model config", text), want.c_str(), moegrad::Error);
}

TEST_CASE("dist: bad arguments are one line, before any communication") {
  dist::ProcessGroup& w = dist::world();
  const std::vector<std::int64_t> short_counts(static_cast<std::size_t>(w.size()) + 1, 0);
  CHECK_THROWS_WITH_AS(w.all_to_all_v(core::zeros({0, 2}), short_counts, short_counts),
                       doctest::Contains("[all_to_all_v] needs one send and one receive count per member"), moegrad::Error);
  Tensor t = core::zeros({2});
  CHECK_THROWS_WITH_AS(w.broadcast(t, w.size()), doctest::Contains("[broadcast] root"), moegrad::Error);
  Tensor flags = core::zeros({2}, {DType::b8});
  CHECK_THROWS_WITH_AS(w.all_reduce(flags, dist::Reduction::sum), doctest::Contains("sum of b8"), moegrad::Error);
  // MPI counts are ints: 3e9 rows (of zero bytes, so nothing is allocated) are refused by name.
  if (w.size() > 1) {
    const std::int64_t huge = 3'000'000'000;
    std::vector<std::int64_t> send(static_cast<std::size_t>(w.size()), 0);
    send[0] = huge;
    CHECK_THROWS_WITH_AS(w.all_to_all_v(core::empty({huge, 0}), send, send),
                         "[all_to_all_v] a send row count of 3000000000 does not fit MPI's int counts (at most 2147483647)",
                         moegrad::Error);
  }
  // Collectives come from the thread that joined the job (MPI_THREAD_FUNNELED).
  if (w.size() > 1) {
    std::string what;
    std::thread([&] {
      try {
        Tensor x = core::zeros({1});
        w.all_reduce(x);
      } catch (const moegrad::Error& e) {
        what = e.what();
      }
    }).join();
    CHECK(what.rfind("[all_reduce] called from another thread than the one that joined the MPI job", 0) == 0);
  }
  w.barrier();  // every rank is still in step
}
