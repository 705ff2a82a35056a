#include "dist/nccl/nccl_comm.h"

#include <nccl.h>
#include <unistd.h>

#include <array>
#include <cstring>
#include <set>
#include <string>

#include "core/cuda/check.h"
#include "core/ops.h"
#include "dist/validate.h"

namespace moegrad::dist {

namespace {
#define MOEGRAD_NCCL_CHECK(call, op)                                                       \
  do {                                                                                     \
    const ncclResult_t nccl_rc_ = (call);                                                  \
    if (nccl_rc_ != ncclSuccess) ::moegrad::fail(op, "{} failed: {}", #call, ncclGetErrorString(nccl_rc_)); \
  } while (0)

ncclComm_t as_comm(void* p) { return static_cast<ncclComm_t>(p); }

// Indexed by DType's value: f32, f64, i64, b8, u8.
ncclDataType_t nccl_type(core::DType d) {
  static constexpr std::array<ncclDataType_t, 5> table{ncclFloat32, ncclFloat64, ncclInt64, ncclUint8, ncclUint8};
  return table[static_cast<std::size_t>(d)];
}

ncclRedOp_t nccl_op(Reduction r) {
  static constexpr std::array<ncclRedOp_t, 3> table{ncclSum, ncclMax, ncclMin};  // Reduction's order
  return table[static_cast<std::size_t>(r)];
}

std::size_t bytes_of(const Tensor& t) { return static_cast<std::size_t>(t.numel()) * core::dtype_size(t.dtype()); }

constexpr std::size_t kIdentityBytes = 128;  // host name (64) + PCI bus id (64)
}  // namespace

bool every_member_has_own_gpu(ProcessGroup& g, int device) {
  std::array<char, kIdentityBytes> id{};
  gethostname(id.data(), 63);
  MOEGRAD_CUDA_CHECK(cudaDeviceGetPCIBusId(id.data() + 64, 63, device));
  Tensor mine = core::zeros({1, static_cast<std::int64_t>(kIdentityBytes)}, {core::DType::u8});
  std::memcpy(mine.raw_data(), id.data(), kIdentityBytes);
  const Tensor all = g.all_gather(mine);
  const auto* p = static_cast<const char*>(all.raw_data());
  std::set<std::string> seen;
  for (int q = 0; q < g.size(); ++q) seen.emplace(p + q * kIdentityBytes, kIdentityBytes);
  return static_cast<int>(seen.size()) == g.size();
}

NcclComm::NcclComm(ProcessGroup& g, int device) : device_(device), rank_(g.rank()), size_(g.size()) {
  ncclUniqueId id{};
  if (rank_ == 0) MOEGRAD_NCCL_CHECK(ncclGetUniqueId(&id), "dist");
  Tensor bytes = core::zeros({static_cast<std::int64_t>(sizeof(id))}, {core::DType::u8});
  std::memcpy(bytes.raw_data(), &id, sizeof(id));
  g.broadcast(bytes, 0);  // over MPI, with the collective timeout: every member is here after it
  std::memcpy(&id, bytes.raw_data(), sizeof(id));
  MOEGRAD_CUDA_CHECK(cudaSetDevice(device_));
  ncclComm_t comm = nullptr;
  MOEGRAD_NCCL_CHECK(ncclCommInitRank(&comm, size_, id, rank_), "dist");
  comm_ = comm;
}

NcclComm::~NcclComm() {
  if (comm_ != nullptr) ncclCommDestroy(as_comm(comm_));
}

void NcclComm::all_reduce(Tensor& t, Reduction op) {
  Tensor buf = core::contiguous(t);
  MOEGRAD_NCCL_CHECK(ncclAllReduce(buf.raw_data(), buf.raw_data(), static_cast<std::size_t>(buf.numel()),
                                   nccl_type(t.dtype()), nccl_op(op), as_comm(comm_), core::cuda::stream(device_)),
                     "all_reduce");
  if (buf.storage() != t.storage()) core::copy_(t, buf);
}

Tensor NcclComm::all_gather(const Tensor& t) {
  const Tensor src = core::contiguous(t);
  const std::int64_t rows = rows_of("all_gather", t);
  Tensor out = core::empty_for("all_gather", with_rows(t, rows * size_), {t.dtype(), t.device()});
  MOEGRAD_NCCL_CHECK(ncclAllGather(src.raw_data(), out.raw_data(), bytes_of(src), ncclUint8, as_comm(comm_),
                                   core::cuda::stream(device_)),
                     "all_gather");
  return out;
}

Tensor NcclComm::all_to_all_v(const Tensor& t, std::span<const std::int64_t> send_rows,
                              std::span<const std::int64_t> recv_rows) {
  const Tensor src = core::contiguous(t);
  const auto row = static_cast<std::size_t>(row_bytes(t));
  std::int64_t received = 0;
  for (std::int64_t r : recv_rows) received += r;
  Tensor out = core::empty_for("all_to_all_v", with_rows(t, received), {t.dtype(), t.device()});
  const auto* send = static_cast<const char*>(src.raw_data());
  auto* recv = static_cast<char*>(out.raw_data());
  cudaStream_t stream = core::cuda::stream(device_);
  MOEGRAD_NCCL_CHECK(ncclGroupStart(), "all_to_all_v");
  std::size_t send_off = 0, recv_off = 0;
  for (int q = 0; q < size_; ++q) {
    const auto ns = static_cast<std::size_t>(send_rows[static_cast<std::size_t>(q)]) * row;
    const auto nr = static_cast<std::size_t>(recv_rows[static_cast<std::size_t>(q)]) * row;
    if (ns > 0) MOEGRAD_NCCL_CHECK(ncclSend(send + send_off, ns, ncclUint8, q, as_comm(comm_), stream), "all_to_all_v");
    if (nr > 0) MOEGRAD_NCCL_CHECK(ncclRecv(recv + recv_off, nr, ncclUint8, q, as_comm(comm_), stream), "all_to_all_v");
    send_off += ns;
    recv_off += nr;
  }
  MOEGRAD_NCCL_CHECK(ncclGroupEnd(), "all_to_all_v");
  return out;
}

void NcclComm::broadcast(Tensor& t, int root) {
  Tensor buf = core::contiguous(t);
  MOEGRAD_NCCL_CHECK(ncclBroadcast(buf.raw_data(), buf.raw_data(), bytes_of(buf), ncclUint8, root, as_comm(comm_),
                                   core::cuda::stream(device_)),
                     "broadcast");
  if (buf.storage() != t.storage()) core::copy_(t, buf);
}

}  // namespace moegrad::dist
