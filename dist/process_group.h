// A process group: the ranks of one distributed job (or a sub-group of them) and the collectives
// moegrad needs, on tensors. One interface; behind it MPI for host tensors (and for CUDA tensors
// through host staging) and NCCL for CUDA tensors when every rank has its own GPU, chosen per
// call by the tensor's device (dist/world.h builds the groups).
//
// Every collective is called by every member, in the same order (the usual MPI rule). Each one
// waits at most collective_timeout() seconds: past it the job is aborted with one line naming
// the collective, the group, the step (set_step) and the ranks that did not arrive (MPI; NCCL
// operations are queued on the GPU's stream and never waited for by the host, see dist/nccl/).
//
// Tensors are contiguous, of any dtype, on the CPU or a CUDA device; results are on the input's
// device. Row counts are along dim 0.
#pragma once
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "core/tensor.h"

namespace moegrad::dist {

using core::Tensor;

enum class Reduction { sum, max, min };

class ProcessGroup {
 public:
  virtual ~ProcessGroup() = default;
  virtual int rank() const = 0;  // this process's index in the group
  virtual int size() const = 0;
  virtual const std::vector<int>& world_ranks() const = 0;  // each member's world rank, in group order
  // For messages: "world (4 ranks)", "expert-parallel group 1 (world ranks 2, 3)".
  virtual std::string describe() const = 0;
  // The members with the same color, ordered by key, as a new group labelled `label`. Every
  // member calls it (collective).
  virtual std::shared_ptr<ProcessGroup> split(int color, int key, const std::string& label) = 0;

  // In place: t becomes the reduction of every member's t (same shape and dtype everywhere).
  virtual void all_reduce(Tensor& t, Reduction op = Reduction::sum) = 0;
  // Every member's t (same shape) concatenated along dim 0 in rank order: [size * t.size(0), ...].
  virtual Tensor all_gather(const Tensor& t) = 0;
  // t [sum(send_rows), ...]: the first send_rows[0] rows go to member 0, the next send_rows[1] to
  // member 1, ...; returns [sum(recv_rows), ...], the rows from member 0 first. recv_rows[q] must
  // equal what member q sends here (exchange the counts first: exchange_counts).
  virtual Tensor all_to_all_v(const Tensor& t, std::span<const std::int64_t> send_rows,
                              std::span<const std::int64_t> recv_rows) = 0;
  // In place: every member's t becomes root's t.
  virtual void broadcast(Tensor& t, int root) = 0;
  virtual void barrier() = 0;
};

// The step named in timeout messages (-1: not training); set by the trainer.
void set_step(std::int64_t step);
std::int64_t current_step();
// Seconds a collective may wait for the other ranks before the job is aborted (<= 0: forever).
void set_collective_timeout(double seconds);
double collective_timeout();

// Helpers on top of the interface (dist/collectives.cpp).
// send[q * per_peer .. (q + 1) * per_peer) goes to member q; returns what each member sent here,
// in the same layout.
std::vector<std::int64_t> exchange_counts(ProcessGroup& g, std::span<const std::int64_t> send, std::int64_t per_peer);
double all_reduce_value(ProcessGroup& g, double value, Reduction op = Reduction::sum);
std::int64_t all_reduce_value(ProcessGroup& g, std::int64_t value, Reduction op = Reduction::sum);
// root's text on every member.
std::string broadcast_string(ProcessGroup& g, const std::string& text, int root = 0);
// Fails on every member, with one line naming `what` and the ranks that disagree, unless every
// member passes the same text (compared by a 64-bit hash, all-gathered):
//   [check_same] the model config differs across world (4 ranks): world rank 1 disagrees with world ranks 0, 2, 3
void check_same(ProcessGroup& g, const std::string& what, const std::string& text);

}  // namespace moegrad::dist
