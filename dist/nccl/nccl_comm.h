// NCCL for CUDA tensors (compiled only with MOEGRAD_WITH_NCCL: the CUDA backend and NCCL's
// nccl.h / libnccl.so). One communicator per group, made on the group's first CUDA collective
// from an id that member 0 draws (ncclGetUniqueId) and broadcasts over MPI. Every operation is
// queued on the device's one stream (core/cuda/check.h), so it orders with the kernels before
// and after it and the host does not wait. all_to_all_v is grouped ncclSend/ncclRecv of bytes.
//
// Not covered by the collective timeout: the host never waits for these (a missing rank stalls
// the stream, and the next host wait on it). Never run here (no GPU where this was written).
#pragma once
#include <cstdint>
#include <span>

#include "dist/process_group.h"

namespace moegrad::dist {

// Whether every member of g has a GPU to itself (collective over g, on host tensors): members
// exchange their host name and the PCI bus id of `device`. Two ranks on one GPU cannot share an
// NCCL communicator; they use host staging over MPI instead.
bool every_member_has_own_gpu(ProcessGroup& g, int device);

class NcclComm {
 public:
  // Collective over g (which carries the id over MPI); device: this rank's GPU.
  NcclComm(ProcessGroup& g, int device);
  ~NcclComm();
  NcclComm(const NcclComm&) = delete;
  NcclComm& operator=(const NcclComm&) = delete;

  int device() const { return device_; }
  void all_reduce(Tensor& t, Reduction op);
  Tensor all_gather(const Tensor& t);
  Tensor all_to_all_v(const Tensor& t, std::span<const std::int64_t> send_rows, std::span<const std::int64_t> recv_rows);
  void broadcast(Tensor& t, int root);

 private:
  void* comm_ = nullptr;  // ncclComm_t (nccl.h stays out of this header)
  int device_ = 0;
  int rank_ = 0;
  int size_ = 1;
};

}  // namespace moegrad::dist
