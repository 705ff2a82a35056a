// A ProcessGroup over an MPI communicator. Host tensors go over MPI; CUDA tensors over NCCL
// when the build has it and every member has its own GPU (decided once per group, see
// cuda_path()), otherwise through host copies over MPI. Every collective is non-blocking MPI
// waited for by wait_all (the collective timeout, dist/mpi/mpi_wait.h).
#pragma once
#include <mpi.h>

#include <memory>

#include "dist/mpi/mpi_wait.h"
#include "dist/process_group.h"

namespace moegrad::dist {
class NcclComm;
}

namespace moegrad::dist::mpi {

class MpiGroup final : public ProcessGroup, public std::enable_shared_from_this<MpiGroup> {
 public:
  // Takes comm over (freed with the group; MPI_COMM_WORLD is never freed).
  MpiGroup(MPI_Comm comm, std::string label);
  ~MpiGroup() override;
  MpiGroup(const MpiGroup&) = delete;
  MpiGroup& operator=(const MpiGroup&) = delete;

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  const std::vector<int>& world_ranks() const override { return world_ranks_; }
  std::string describe() const override;
  std::shared_ptr<ProcessGroup> split(int color, int key, const std::string& label) override;

  void all_reduce(Tensor& t, Reduction op) override;
  Tensor all_gather(const Tensor& t) override;
  Tensor all_to_all_v(const Tensor& t, std::span<const std::int64_t> send_rows,
                      std::span<const std::int64_t> recv_rows) override;
  void broadcast(Tensor& t, int root) override;
  void barrier() override;

  MPI_Comm comm() const { return comm_; }
  // Frees the communicators (and the NCCL one) before MPI_Finalize; the group is unusable after.
  void release();

 private:
  // Counts the collective (the arrival probes compare counts) and waits for it.
  void begin() { ++channel_.seq; }
  void wait(std::span<MPI_Request> requests, const char* op) { wait_all(requests, op, *this, channel_); }
  // Every member reaches this point (a barrier named op in a timeout message).
  void arrive(const char* op);
  // The host-tensor collectives (CUDA tensors are staged through these).
  void all_reduce_host(Tensor& t, Reduction op);
  Tensor all_gather_host(const Tensor& t);
  Tensor all_to_all_v_host(const Tensor& t, std::span<const std::int64_t> send_rows,
                           std::span<const std::int64_t> recv_rows);
  void broadcast_host(Tensor& t, int root);
  // For a CUDA tensor: the NCCL communicator, or null for host staging. The first call decides
  // for the group (collective: every member calls it with a CUDA tensor, in the same order).
  NcclComm* cuda_path(const Tensor& t);

  MPI_Comm comm_ = MPI_COMM_NULL;
  std::string label_;
  int rank_ = 0;
  int size_ = 1;
  std::vector<int> world_ranks_;
  ArrivalChannel channel_;
  bool cuda_decided_ = false;
  std::unique_ptr<NcclComm> nccl_;
};

}  // namespace moegrad::dist::mpi
