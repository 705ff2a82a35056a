#include "dist/mpi/mpi_group.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstdlib>
#include <mutex>
#include <set>

#include "core/checked_math.h"
#include "core/ops.h"
#include "dist/mpi/mpi_runtime.h"
#include "dist/mpi/mpi_types.h"
#include "dist/mpi/mpi_world.h"
#include "dist/validate.h"
#include "dist/world.h"

#ifdef MOEGRAD_WITH_NCCL
#include "dist/nccl/nccl_comm.h"
#else
namespace moegrad::dist {
class NcclComm {};  // never made without NCCL; complete so unique_ptr can name it
}  // namespace moegrad::dist
#endif

namespace moegrad::dist::mpi {

namespace {
// Every live group, released before MPI_Finalize. Never destroyed: the world group's own
// destructor runs among the static destructors, after any of this file's would have.
struct Groups {
  std::mutex mutex;
  std::set<MpiGroup*> set;
};
Groups& groups() {
  static auto* g = new Groups;
  return *g;
}

// A contiguous tensor with t's values (t itself when it already is one).
Tensor contiguous_host(const Tensor& t) { return core::contiguous(t); }
}  // namespace

void release_all_groups() {
  std::lock_guard lock(groups().mutex);
  for (MpiGroup* g : groups().set) g->release();
}

MpiGroup::MpiGroup(MPI_Comm comm, std::string label) : comm_(comm), label_(std::move(label)) {
  MOEGRAD_MPI_CHECK(MPI_Comm_rank(comm_, &rank_), "dist");
  MOEGRAD_MPI_CHECK(MPI_Comm_size(comm_, &size_), "dist");
  // Every member is here (split waited for them first), so these blocking calls return at once.
  int world_rank = 0;
  MOEGRAD_MPI_CHECK(MPI_Comm_rank(MPI_COMM_WORLD, &world_rank), "dist");
  world_ranks_.resize(static_cast<std::size_t>(size_));
  MOEGRAD_MPI_CHECK(MPI_Allgather(&world_rank, 1, MPI_INT, world_ranks_.data(), 1, MPI_INT, comm_), "dist");
  MOEGRAD_MPI_CHECK(MPI_Comm_dup(comm_, &channel_.comm), "dist");
  register_channel(&channel_);
  std::lock_guard lock(groups().mutex);
  groups().set.insert(this);
}

MpiGroup::~MpiGroup() {
  {
    std::lock_guard lock(groups().mutex);
    groups().set.erase(this);
  }
  release();
}

void MpiGroup::release() {
  nccl_.reset();
  if (channel_.comm == MPI_COMM_NULL) return;
  unregister_channel(&channel_);
  if (initialized()) {
    MPI_Comm_free(&channel_.comm);
    if (comm_ != MPI_COMM_WORLD) MPI_Comm_free(&comm_);
  }
  channel_.comm = MPI_COMM_NULL;
}

std::string MpiGroup::describe() const {
  if (comm_ == MPI_COMM_WORLD) return fmt::format("world ({} rank{})", size_, size_ == 1 ? "" : "s");
  return fmt::format("{} (world rank{} {})", label_, size_ == 1 ? "" : "s", fmt::join(world_ranks_, ", "));
}

std::shared_ptr<ProcessGroup> MpiGroup::split(int color, int key, const std::string& label) {
  check_thread("split");
  MOEGRAD_CHECK(color >= 0, "split", "color must be >= 0, got {} (on {})", color, describe());
  // Wait for every member first (with the timeout): MPI_Comm_split itself blocks without one.
  barrier();
  MPI_Comm sub = MPI_COMM_NULL;
  MOEGRAD_MPI_CHECK(MPI_Comm_split(comm_, color, key, &sub), "split");
  return std::make_shared<MpiGroup>(sub, label);
}

void MpiGroup::barrier() {
  check_thread("barrier");
  begin();
  MPI_Request r = MPI_REQUEST_NULL;
  MOEGRAD_MPI_CHECK(MPI_Ibarrier(comm_, &r), "barrier");
  wait({&r, 1}, "barrier");
}

// ---- CUDA tensors: NCCL or host staging ---------------------------------------------------------

NcclComm* MpiGroup::cuda_path(const Tensor& t) {
#ifdef MOEGRAD_WITH_NCCL
  if (!cuda_decided_) {
    const char* env = std::getenv("MOEGRAD_DIST_CUDA");
    const std::string mode = env ? env : "";
    MOEGRAD_CHECK(mode.empty() || mode == "host" || mode == "nccl", "dist",
                  "MOEGRAD_DIST_CUDA must be 'host' or 'nccl', got '{}'", mode);
    // Every member must take the same path, whatever each one's environment says.
    const bool want = all_reduce_value(*this, std::int64_t{mode != "host"}, Reduction::min) == 1;
    if (want && every_member_has_own_gpu(*this, t.device().index))
      nccl_ = std::make_unique<NcclComm>(*this, t.device().index);
    cuda_decided_ = true;
  }
  if (nccl_) {
    MOEGRAD_CHECK(nccl_->device() == t.device().index, "dist",
                  "{} communicates over NCCL on cuda:{}, but got a tensor on {}", describe(), nccl_->device(),
                  t.device().str());
  }
  return nccl_.get();
#else
  (void)t;
  (void)cuda_decided_;
  return nullptr;
#endif
}

void MpiGroup::all_reduce(Tensor& t, Reduction op) {
  check_thread("all_reduce");
  rows_of("all_reduce", t);
  check_reduction("all_reduce", t, op);
  if (!t.device().is_cuda()) return all_reduce_host(t, op);
#ifdef MOEGRAD_WITH_NCCL
  if (NcclComm* n = cuda_path(t)) {
    begin();
    return n->all_reduce(t, op);
  }
#endif
  Tensor host = core::to_device(t, core::Device::cpu());
  all_reduce_host(host, op);
  core::copy_(t, host);
}

Tensor MpiGroup::all_gather(const Tensor& t) {
  check_thread("all_gather");
  rows_of("all_gather", t);
  if (!t.device().is_cuda()) return all_gather_host(t);
#ifdef MOEGRAD_WITH_NCCL
  if (NcclComm* n = cuda_path(t)) {
    begin();
    return n->all_gather(t);
  }
#endif
  return core::to_device(all_gather_host(core::to_device(t, core::Device::cpu())), t.device());
}

Tensor MpiGroup::all_to_all_v(const Tensor& t, std::span<const std::int64_t> send_rows,
                              std::span<const std::int64_t> recv_rows) {
  check_thread("all_to_all_v");
  check_all_to_all_args("all_to_all_v", *this, t, send_rows, recv_rows);
  if (!t.device().is_cuda()) return all_to_all_v_host(t, send_rows, recv_rows);
#ifdef MOEGRAD_WITH_NCCL
  if (NcclComm* n = cuda_path(t)) {
    begin();
    return n->all_to_all_v(t, send_rows, recv_rows);
  }
#endif
  return core::to_device(all_to_all_v_host(core::to_device(t, core::Device::cpu()), send_rows, recv_rows), t.device());
}

void MpiGroup::broadcast(Tensor& t, int root) {
  check_thread("broadcast");
  rows_of("broadcast", t);
  check_root("broadcast", *this, root);
  if (!t.device().is_cuda()) return broadcast_host(t, root);
#ifdef MOEGRAD_WITH_NCCL
  if (NcclComm* n = cuda_path(t)) {
    begin();
    return n->broadcast(t, root);
  }
#endif
  Tensor host = core::to_device(t, core::Device::cpu());
  broadcast_host(host, root);
  core::copy_(t, host);
}

// ---- host tensors over MPI ------------------------------------------------------------------------

void MpiGroup::all_reduce_host(Tensor& t, Reduction op) {
  Tensor buf = contiguous_host(t);
  const MPI_Datatype type = datatype_of(t.dtype());
  const auto elem = static_cast<std::int64_t>(core::dtype_size(t.dtype()));
  // MPI counts are ints: reduce in chunks of at most 2^30 elements, all in flight at once.
  constexpr std::int64_t kChunk = std::int64_t{1} << 30;
  std::vector<MPI_Request> requests;
  auto* base = static_cast<char*>(buf.raw_data());
  begin();
  for (std::int64_t start = 0; start < buf.numel(); start += kChunk) {
    const int count = static_cast<int>(std::min(kChunk, buf.numel() - start));
    MPI_Request& r = requests.emplace_back(MPI_REQUEST_NULL);
    MOEGRAD_MPI_CHECK(MPI_Iallreduce(MPI_IN_PLACE, base + start * elem, count, type, op_of(op), comm_, &r), "all_reduce");
  }
  wait(requests, "all_reduce");
  if (buf.storage() != t.storage()) core::copy_(t, buf);
}

Tensor MpiGroup::all_gather_host(const Tensor& t) {
  const Tensor src = contiguous_host(t);
  const std::int64_t rows = rows_of("all_gather", t);
  Tensor out = core::empty_for("all_gather", with_rows(t, core::checked_mul("all_gather", "the gathered row count", rows, size_)),
                               {t.dtype()});
  const RowType row("all_gather", row_bytes(t));
  const int count = to_int("all_gather", "the row count", rows);
  begin();
  MPI_Request r = MPI_REQUEST_NULL;
  MOEGRAD_MPI_CHECK(MPI_Iallgather(src.raw_data(), count, row.get(), out.raw_data(), count, row.get(), comm_, &r),
                    "all_gather");
  wait({&r, 1}, "all_gather");
  return out;
}

Tensor MpiGroup::all_to_all_v_host(const Tensor& t, std::span<const std::int64_t> send_rows,
                                   std::span<const std::int64_t> recv_rows) {
  const char* op = "all_to_all_v";
  const Tensor src = contiguous_host(t);
  const std::size_t n = send_rows.size();
  // Counts and displacements in rows (one row = one element of the row type), as MPI ints.
  std::vector<int> send_counts(n), send_displs(n), recv_counts(n), recv_displs(n);
  std::int64_t sent = 0, received = 0;
  for (std::size_t q = 0; q < n; ++q) {
    send_counts[q] = to_int(op, "a send row count", send_rows[q]);
    send_displs[q] = to_int(op, "a send row offset", sent);
    recv_counts[q] = to_int(op, "a receive row count", recv_rows[q]);
    recv_displs[q] = to_int(op, "a receive row offset", received);
    sent += send_rows[q];
    received += recv_rows[q];
  }
  Tensor out = core::empty_for(op, with_rows(t, received), {t.dtype()});
  const RowType row(op, row_bytes(t));
  begin();
  MPI_Request r = MPI_REQUEST_NULL;
  MOEGRAD_MPI_CHECK(MPI_Ialltoallv(src.raw_data(), send_counts.data(), send_displs.data(), row.get(), out.raw_data(),
                                   recv_counts.data(), recv_displs.data(), row.get(), comm_, &r),
                    op);
  wait({&r, 1}, op);
  return out;
}

void MpiGroup::broadcast_host(Tensor& t, int root) {
  Tensor buf = contiguous_host(t);
  const RowType row("broadcast", row_bytes(t));
  const int count = to_int("broadcast", "the row count", rows_of("broadcast", t));
  begin();
  MPI_Request r = MPI_REQUEST_NULL;
  MOEGRAD_MPI_CHECK(MPI_Ibcast(buf.raw_data(), count, row.get(), root, comm_, &r), "broadcast");
  wait({&r, 1}, "broadcast");
  if (buf.storage() != t.storage()) core::copy_(t, buf);
}

// ---- the world ---------------------------------------------------------------------------------

std::shared_ptr<ProcessGroup> make_world_group() {
  ensure_initialized();
  auto w = std::make_shared<MpiGroup>(MPI_COMM_WORLD, "world");
  const int launched = launched_size();
  MOEGRAD_CHECK(!(launched > 1 && w->size() == 1), "dist",
                "launched as one of {} ranks, but MPI sees a world of 1 process (was mpirun from another MPI "
                "library than the one moegrad was built with?)",
                launched);
  return w;
}

}  // namespace moegrad::dist::mpi
