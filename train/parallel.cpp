#include "train/parallel.h"

#include <fmt/format.h>

#include <cmath>

#include "core/error.h"
#include "core/ops.h"
#include "dist/world.h"
#include "layers/moe/moe_layer.h"
#include "optim/clip.h"
#include "optim/module_state.h"

namespace moegrad::train {

namespace {
using core::Tensor;
constexpr const char* kOp = "train";
// Elements per gradient bucket: large enough that the per-call latency does not matter, small
// enough that the flat copy stays a small share of memory.
constexpr std::int64_t kBucketElements = std::int64_t{1} << 22;

Tensor host(const Tensor& t) { return core::contiguous(core::to_device(t, core::Device::cpu())); }

std::map<std::string, ag::Variable> parameter_map(const nn::Module& m) {
  std::map<std::string, ag::Variable> out;
  for (const auto& [name, v] : m.named_parameters()) out.emplace(name, v);
  return out;
}

// Each buffer of `to` takes the value of the buffer of `from` with its name and shape (the twin
// and the sharded model hold the same buffers).
void copy_buffers(const nn::Module& from, const nn::Module& to) {
  std::map<std::string, Tensor> source;
  for (const auto& [name, b] : from.named_buffers()) source.emplace(name, b);
  for (const auto& [name, b] : to.named_buffers())
    if (const auto it = source.find(name); it != source.end() && it->second.shape() == b.shape())
      core::copy_(b, core::to_device(it->second, b.device()));
}

// "a.b/exp_avg" -> "a.b"; "" when the key has no slot.
std::string parameter_of(const std::string& key) {
  const auto slash = key.rfind('/');
  return slash == std::string::npos ? "" : key.substr(0, slash);
}
}  // namespace

Parallel::Parallel(std::int64_t expert_parallel) : world_(dist::world_ptr()), p_(expert_parallel) {
  const int w = world_->size();
  // The same on every rank: each throws, rank 0 tells it.
  if (w == 1 && p_ > 1)
    throw JobError(fmt::format("[{}] --expert-parallel {} spreads the experts over {} ranks, but this process runs alone: "
                               "launch it with mpirun -np N, N a multiple of {}", kOp, p_, p_, p_));
  if (w % p_ != 0)
    throw JobError(fmt::format("[{}] --expert-parallel {} must divide the world size {} (mpirun -np {})", kOp, p_, w, w));
  if (p_ > 1) {
    expert_group_ = world_->split(static_cast<int>(rank() / p_), rank(), fmt::format("expert-parallel group {}", rank() / p_));
    replica_group_ = world_->split(static_cast<int>(rank() % p_), rank(), fmt::format("expert replica group {}", rank() % p_));
  }
}

void Parallel::place_experts(const std::shared_ptr<nn::Module>& model) {
  if (p_ == 1) return;
  for (const auto& [path, layer] : nn::moe::moe_layers(model)) {
    layer->place_experts(expert_group_);
    const nn::moe::ExpertPlacement& at = layer->placement();
    for (const std::string& name : layer->expert_parameter_names())
      shards_[path.empty() ? name : path + "." + name] = Shard{expert_group_, at.first, at.count};
  }
}

void Parallel::reduce_gradients(const optim::NamedParameters& params) const {
  if (!distributed()) return;
  // Two streams of buckets, each in parameter order: replicated over the world, experts over
  // their replica group (absent when P = W: each expert lives on one rank).
  struct Bucket {
    std::vector<const ag::Variable*> params;
    std::int64_t elements = 0;
  };
  auto flush = [](Bucket& b, dist::ProcessGroup* group) {
    if (b.params.empty()) return;
    if (group && group->size() > 1) {
      std::vector<Tensor> flat;
      for (const ag::Variable* v : b.params) flat.push_back(core::reshape(v->grad(), {-1}));
      Tensor sum = core::cat(flat, 0);
      group->all_reduce(sum);
      std::int64_t at = 0;
      for (const ag::Variable* v : b.params) {
        const std::int64_t n = v->grad().numel();
        core::copy_(v->grad(), core::reshape(core::narrow(sum, 0, at, n), v->grad().shape()));
        at += n;
      }
    }
    b = Bucket{};
  };
  Bucket replicated, experts;
  for (const auto& [name, v] : params) {
    if (!v.grad().defined()) v.set_grad(core::zeros(v.shape(), {v.dtype(), v.value().device()}));
    if (!v.grad().is_contiguous()) v.set_grad(core::clone(v.grad()));
    const bool sharded = shards_.count(name) != 0;
    Bucket& b = sharded ? experts : replicated;
    dist::ProcessGroup* group = sharded ? replica_group_.get() : world_.get();
    if (!b.params.empty() && (b.elements + v.numel() > kBucketElements || b.params.front()->dtype() != v.dtype()))
      flush(b, group);
    b.params.push_back(&v);
    b.elements += v.numel();
  }
  flush(replicated, world_.get());
  flush(experts, replica_group_.get());
}

std::int64_t Parallel::total_parameters(const nn::Module& model) const {
  std::int64_t n = 0;
  for (const auto& [name, v] : model.named_parameters()) n += shards_.count(name) ? v.numel() * p_ : v.numel();
  return n;
}

std::int64_t Parallel::reduced_bytes(const optim::NamedParameters& params) const {
  if (!distributed()) return 0;
  std::int64_t bytes = 0;
  for (const auto& [name, v] : params) {
    const bool sharded = shards_.count(name) != 0;
    if (!sharded || (replica_group_ && replica_group_->size() > 1))
      bytes += v.numel() * static_cast<std::int64_t>(core::dtype_size(v.dtype()));
  }
  return bytes;
}

double Parallel::clip_grad_norm(const optim::NamedParameters& params, double max_norm) const {
  // Unsharded, every rank holds the whole (summed) gradient: the one-process rule applies as is.
  if (!sharded()) return optim::clip_grad_norm(params, max_norm);
  const std::vector<double> norms = optim::grad_norms(params);
  double replicated = 0, experts = 0;  // squared norms
  for (std::size_t i = 0; i < params.size(); ++i) (shards_.count(params[i].first) ? experts : replicated) += norms[i] * norms[i];
  // The expert-parallel group together holds every expert once.
  experts = dist::all_reduce_value(*expert_group_, experts);
  const double total = std::sqrt(replicated + experts);
  optim::scale_grads_to_norm(params, total, max_norm);
  return total;
}

Tensor Parallel::gather_experts(const Shard& s, const Tensor& local) const {
  return host(s.group->all_gather(core::contiguous(local)));
}

std::shared_ptr<nn::Module>& Parallel::twin(const TwinFactory& make_twin) {
  if (!twin_) twin_ = make_twin();
  return twin_;
}

std::pair<nn::StateDict, nn::StateDict> Parallel::full_state(const nn::Module& model, const optim::Optimizer& opt,
                                                             const TwinFactory& make_twin) {
  auto on_host = [](const nn::StateDict& sd) {
    nn::StateDict out;
    for (const auto& [key, t] : sd) out.insert(key, t.defined() ? host(t) : t);
    return out;
  };
  if (!sharded()) {
    if (!writer()) return {};
    return {on_host(model.state_dict()), on_host(optim::module_state_dict(opt, model))};
  }
  // Every rank takes part in the gathers, in the same order (named_parameters, state_dict order);
  // the writer puts the full tensors in its twin, reshaped to the twin's shapes (lucidrains'
  // hierarchical experts keep [eo, ei, ...]).
  std::shared_ptr<nn::Module> full = writer() ? twin(make_twin) : nullptr;
  const std::map<std::string, ag::Variable> twin_params = full ? parameter_map(*full) : std::map<std::string, ag::Variable>{};
  for (const auto& [name, v] : model.named_parameters()) {
    const auto shard = shards_.find(name);
    const Tensor value = shard == shards_.end() ? host(v.value()) : gather_experts(shard->second, v.value());
    if (full) core::copy_(twin_params.at(name).value(), core::reshape(value, twin_params.at(name).shape()));
  }
  nn::StateDict model_state, internal;
  if (full) {
    copy_buffers(model, *full);
    model_state = on_host(full->state_dict());
  }
  // The optimizer's state by internal name, each expert slot gathered to the twin's shape, then
  // under the twin's keys (PyTorch's names and shapes, as /model).
  for (const auto& [key, t] : opt.state_dict()) {
    const std::string pname = parameter_of(key);
    const auto shard = shards_.find(pname);
    if (shard != shards_.end() && t.defined() && t.dim() > 0) {
      const Tensor all = gather_experts(shard->second, t);
      if (full) internal.insert(key, core::reshape(all, twin_params.at(pname).shape()));
    } else if (full) {
      internal.insert(key, t.defined() ? host(t) : t);
    }
  }
  if (!full) return {};
  return {std::move(model_state), on_host(optim::to_module_keys(internal, *full, opt.name()))};
}

void Parallel::load_full_state(nn::Module& model, optim::Optimizer& opt, const nn::StateDict& model_state,
                               const nn::StateDict& optimizer_state, const TwinFactory& make_twin, bool internal_names) {
  std::vector<std::string> names;
  for (const auto& [name, v] : opt.named_parameters()) names.push_back(name);
  if (!sharded()) {
    model.load_state_dict(model_state);
    if (internal_names) return opt.load_state_dict(optimizer_state);
    return optim::load_module_state_dict(opt, model, optimizer_state);
  }
  std::shared_ptr<nn::Module>& full = twin(make_twin);
  full->load_state_dict(model_state);
  const std::map<std::string, ag::Variable> twin_params = parameter_map(*full), params = parameter_map(model);
  // Each rank's slice of a full [X, ...] tensor whose expert dims lead: local [count, rest...].
  auto slice = [](const Tensor& all, const Shard& s, const core::Shape& local) {
    core::Shape flat = local;
    flat[0] = -1;
    return core::narrow(core::reshape(all, flat), 0, s.first, s.count);
  };
  for (const auto& [name, v] : params) {
    const Tensor& src = twin_params.at(name).value();
    const auto shard = shards_.find(name);
    const Tensor part = shard == shards_.end() ? src : slice(src, shard->second, v.shape());
    core::copy_(v.value(), core::to_device(core::contiguous(part), v.value().device()));
  }
  copy_buffers(*full, model);
  // The optimizer's state by internal name in the twin's (full) shapes, then this rank's slices
  // of the expert parameters' slots.
  const nn::StateDict internal =
      internal_names ? optimizer_state : optim::from_module_keys(optimizer_state, *full, names, opt.slot_names(), opt.name());
  nn::StateDict mine;
  for (const auto& [key, t] : internal) {
    const std::string pname = parameter_of(key);
    const auto shard = shards_.find(pname);
    if (shard != shards_.end() && t.defined() && t.dim() > 0)
      mine.insert(key, core::contiguous(slice(t, shard->second, params.at(pname).shape())));
    else
      mine.insert(key, t);
  }
  opt.load_state_dict(mine);
}

void Parallel::agree(const std::function<void()>& fn) {
  if (!distributed()) return fn();
  std::string message;
  try {
    fn();
  } catch (const Error& e) {
    message = e.what();
  }
  const std::int64_t first = dist::all_reduce_value(*world_, message.empty() ? std::int64_t{world_size()} : rank(),
                                                     dist::Reduction::min);
  if (first == world_size()) return;
  throw JobError(dist::broadcast_string(*world_, message, static_cast<int>(first)));
}

}  // namespace moegrad::train
