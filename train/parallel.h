// How a training run spreads over the ranks of an MPI job (`mpirun -np W moegrad train
// --expert-parallel P ...`): W ranks, each taking its own micro-batches (data parallelism);
// expert-parallel groups of P consecutive ranks (world rank / P), over which every MoE layer's
// experts are split (member p keeps experts [p X / P, (p + 1) X / P)); replica groups (world rank
// % P) of the W / P ranks that hold the same experts.
//
// Gradients: after the micro-batches' backward passes, each parameter's gradient is summed over
// the ranks that hold it: replicated parameters (gates, norms, embeddings, dense layers) over the
// world, expert parameters over their replica group (the expert-parallel all-to-all already
// brought every token's contribution to the owner). Sums run in flat buckets, in the parameters'
// order, so two runs of one configuration are bit-identical. The clipping norm is the norm of the
// summed gradient over every expert, as one process would compute it.
//
// Checkpoints hold the whole model under PyTorch's names whatever W: full_state() gathers the
// experts to the writing rank (through a full "twin" model, built once on that rank, whose
// state_dict gives the names), and load_full_state() takes each rank's slice.
#pragma once
#include <functional>
#include <map>
#include <memory>
#include <string>

#include "core/error.h"
#include "dist/process_group.h"
#include "layers/module.h"
#include "optim/optimizer.h"

namespace moegrad::train {

// An error every rank of the job raised together (Parallel::agree): one rank reports it.
struct JobError : Error {
  using Error::Error;
};

class Parallel {
 public:
  // Joins the MPI job when launched by mpirun; checks that P divides W.
  explicit Parallel(std::int64_t expert_parallel);

  int rank() const { return world_->rank(); }
  int world_size() const { return world_->size(); }
  int expert_parallel() const { return static_cast<int>(p_); }
  bool distributed() const { return world_->size() > 1; }
  bool writer() const { return world_->rank() == 0; }  // writes logs, metrics and checkpoints
  dist::ProcessGroup& world() { return *world_; }

  // Spreads the experts of every MoE layer of model over this rank's expert-parallel group (a
  // no-op when P = 1) and records which parameters are sharded.
  void place_experts(const std::shared_ptr<nn::Module>& model);
  bool sharded() const { return !shards_.empty(); }
  // The whole model's parameter count (every expert counted once), from this rank's share.
  std::int64_t total_parameters(const nn::Module& model) const;

  // Sums each gradient over the ranks that hold its parameter (see above). Parameters without a
  // gradient count as zeros (another rank's micro-batch may have reached them).
  void reduce_gradients(const optim::NamedParameters& params) const;
  // Bytes of gradient this rank all-reduces per step (0 in one process; experts count only when
  // they have replicas).
  std::int64_t reduced_bytes(const optim::NamedParameters& params) const;
  // Scales the gradients so that their global 2-norm is at most max_norm (PyTorch's
  // clip_grad_norm_ rule); returns the norm before clipping.
  double clip_grad_norm(const optim::NamedParameters& params, double max_norm) const;

  // The whole model's state and the optimizer's (full tensors, both under PyTorch's names and
  // shapes: optim/module_state.h), on the host, on the writer; every rank calls it
  // (collective). make_twin builds an unsharded model of the same options. Other ranks get
  // empty dicts.
  using TwinFactory = std::function<std::shared_ptr<nn::Module>()>;
  std::pair<nn::StateDict, nn::StateDict> full_state(const nn::Module& model, const optim::Optimizer& opt,
                                                     const TwinFactory& make_twin);
  // Loads a full state (every rank reads the same checkpoint) into the sharded model and
  // optimizer: each rank takes its experts. internal_names: the optimizer state is keyed by
  // parameter name (Optimizer::state_dict's form, format_version 2 checkpoints) rather than by
  // the model's state_dict keys.
  void load_full_state(nn::Module& model, optim::Optimizer& opt, const nn::StateDict& model_state,
                       const nn::StateDict& optimizer_state, const TwinFactory& make_twin, bool internal_names = false);

  // Runs fn on every rank; if it throws on any, every rank throws the lowest failing rank's
  // message (so the job stops together instead of waiting in the next collective).
  void agree(const std::function<void()>& fn);

 private:
  struct Shard {
    std::shared_ptr<dist::ProcessGroup> group;  // the expert-parallel group
    std::int64_t first = 0, count = 0;
  };
  // A sharded tensor [count, ...] gathered over the shard's group: [X, ...] on the host, the
  // experts in order (leading expert dims flattened).
  core::Tensor gather_experts(const Shard& s, const core::Tensor& local) const;
  std::shared_ptr<nn::Module>& twin(const TwinFactory& make_twin);

  std::shared_ptr<dist::ProcessGroup> world_, expert_group_, replica_group_;
  std::int64_t p_ = 1;
  std::map<std::string, Shard> shards_;  // sharded parameter name (model-relative) -> its shard
  std::shared_ptr<nn::Module> twin_;
};

}  // namespace moegrad::train
