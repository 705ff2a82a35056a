#include "train/models.h"

#include <fmt/format.h>

#include <cmath>
#include <optional>

#include "core/error.h"
#include "core/rng.h"
#include "layers/moe/routing.h"

namespace moegrad::train {

namespace {
using ag::Variable;
using core::Tensor;

// hidden_mult with int(dim * mult * 2 / 3) == hidden (st-moe's Expert sizing).
double hidden_mult_for(std::int64_t dim, std::int64_t hidden) {
  return (static_cast<double>(hidden) + 0.5) * 3.0 / (2.0 * static_cast<double>(dim));
}

struct FfOutput {
  Variable y, aux;
  double balance = 0.0, z = 0.0;
  std::optional<nn::moe::RoutingStats> stats;
};

// st-moe's Expert(dim, hidden): Linear(dim, 2 hidden), GEGLU's mult_bias (hidden), Linear(hidden, dim).
std::int64_t st_expert_parameters(std::int64_t dim, std::int64_t hidden) { return 3 * dim * hidden + 3 * hidden + dim; }

// One residual feed-forward: a MoE layer of a given kind (one interface, moe::MoELayer), or the
// dense GEGLU baseline.
class FeedForward : public nn::Module {
 public:
  FeedForward(const ModelOptions& o, core::Generator* gen) : o_(o) {
    const core::TensorOptions f32{};
    if (o.kind == "st_moe") {
      nn::st::MoEOptions m;
      m.expert_hidden_mult = hidden_mult_for(o.dim, o.hidden);
      m.gating_top_n = o.top_n;
      m.capacity_factor_train = m.capacity_factor_eval = o.capacity_factor;
      m.dropless = o.dropless;
      m.balance_loss_coef = o.balance_loss_coef;
      m.router_z_loss_coef = o.router_z_loss_coef;
      moe_ = register_module("moe", std::make_shared<nn::st::MoE>(o.dim, o.experts, m, f32, gen));
    } else if (o.kind == "lucidrains" || o.kind == "hierarchical") {
      nn::lmoe::MoEOptions m;
      m.hidden_dim = o.hidden;
      m.capacity_factor_train = m.capacity_factor_eval = o.capacity_factor;
      m.dropless = o.dropless;
      m.loss_coef = o.balance_loss_coef;
      const std::int64_t inner = o.experts / o.experts_outer;
      moe_ = register_module(
          "moe", o.kind == "lucidrains"
                     ? std::shared_ptr<nn::moe::MoELayer>(std::make_shared<nn::lmoe::MoE>(o.dim, o.experts, m, f32, gen))
                     : std::make_shared<nn::lmoe::HeirarchicalMoE>(o.dim, std::pair{o.experts_outer, inner}, m, f32, gen));
    } else {
      dense_ = register_module(
          "ff", std::make_shared<nn::st::Expert>(o.dim, hidden_mult_for(o.dim, dense_hidden(o)), true, false, f32, gen));
    }
    active_ = layer_active_parameters(o);
  }

  FfOutput forward(const Variable& x) {
    FfOutput out;
    if (moe_) {
      nn::moe::MoEForward f;
      f.noise_gates = o_.noise_gates && is_training();  // no noise when evaluating (only st_moe's gates draw noise)
      f.noise_mult = o_.noise_mult;
      auto r = moe_->forward(x, f);
      out = {r.output, r.aux_loss, scalar(r.balance_loss), scalar(r.router_z_loss), moe_->last_routing_stats()};
    } else {
      out.y = dense_->forward(x);
    }
    return out;
  }
  std::int64_t active() const { return active_; }
  std::string name() const override { return "FeedForward"; }

 private:
  static double scalar(const Variable& v) { return v.defined() ? core::sum(v.value()).item<double>() : 0.0; }
  ModelOptions o_;
  std::shared_ptr<nn::moe::MoELayer> moe_;
  std::shared_ptr<nn::st::Expert> dense_;
  std::int64_t active_ = 0;
};

// Pre-norm residual blocks: h = h + ff(RMSNorm(h)).
class Stack : public nn::Module {
 public:
  Stack(const ModelOptions& o, core::Generator* gen) {
    for (std::int64_t i = 0; i < o.layers; ++i) {
      auto block = std::make_shared<nn::Module>();
      norms_.push_back(block->register_module("norm", std::make_shared<nn::RMSNorm>(o.dim)));
      ffs_.push_back(block->register_module("ff", std::make_shared<FeedForward>(o, gen)));
      register_module(std::to_string(i), block);
    }
  }
  Variable forward(const Variable& x, ModelOutput& out) {
    Variable h = x;
    out.aux_loss = ag::constant(core::zeros({}, {x.dtype(), x.device()}));
    for (std::size_t i = 0; i < ffs_.size(); ++i) {
      FfOutput f = ffs_[i]->forward(norms_[i]->forward(h));
      h = ag::add(h, f.y);
      if (f.aux.defined()) out.aux_loss = ag::add(out.aux_loss, ag::sum(f.aux));
      out.balance_loss += f.balance;
      out.router_z_loss += f.z;
      if (f.stats) out.routing.push_back(*f.stats);
    }
    return h;
  }
  std::int64_t active() const {
    std::int64_t n = 0;
    for (const auto& f : ffs_) n += f->active();  // the norms are counted by the caller
    return n;
  }
  std::string name() const override { return "Stack"; }

 private:
  std::vector<std::shared_ptr<nn::RMSNorm>> norms_;
  std::vector<std::shared_ptr<FeedForward>> ffs_;
};

// A model's active parameters with its feed-forwards replaced by st_moe layers of the same options.
std::int64_t as_st_moe(const ModelOptions& o, std::int64_t active) {
  ModelOptions st = o;
  st.kind = "st_moe";
  return active + o.layers * (layer_active_parameters(st) - layer_active_parameters(o));
}

class RegressionModel : public TaskModel {
 public:
  RegressionModel(const ModelOptions& o, std::int64_t in_dim, std::int64_t out_dim, core::Generator* gen) : o_(o) {
    in_ = register_module("in_proj", std::make_shared<nn::Linear>(in_dim, o.dim, true, core::TensorOptions{}, gen));
    stack_ = register_module("blocks", std::make_shared<Stack>(o, gen));
    norm_ = register_module("norm", std::make_shared<nn::RMSNorm>(o.dim));
    out_ = register_module("head", std::make_shared<nn::Linear>(o.dim, out_dim, true, core::TensorOptions{}, gen));
  }
  ModelOutput forward(const Batch& batch) override {
    ModelOutput out;
    Variable h = stack_->forward(in_->forward(ag::constant(batch.x)), out);
    Variable pred = out_->forward(norm_->forward(h));
    if (batch.y.defined()) out.loss = ag::mean(ag::square(ag::sub(pred, ag::constant(batch.y))));
    out.prediction = pred.value();
    out.tokens = batch.x.numel() / batch.x.size(-1);
    return out;
  }
  std::int64_t active_parameters() const override {
    return in_->num_parameters() + out_->num_parameters() + (o_.layers + 1) * o_.dim + stack_->active();
  }
  std::int64_t st_moe_active_parameters() const override { return as_st_moe(o_, active_parameters()); }
  std::string name() const override { return "RegressionModel"; }

 private:
  ModelOptions o_;
  std::shared_ptr<nn::Linear> in_, out_;
  std::shared_ptr<Stack> stack_;
  std::shared_ptr<nn::RMSNorm> norm_;
};

// The token models' outputs from logits [b * n, V]: the prediction [b, n, V], and with targets
// the mean cross-entropy and the accuracy (a batch without targets is a prediction).
void token_outputs(const Variable& logits, const Batch& batch, std::int64_t vocab, ModelOutput& out) {
  out.tokens = batch.x.numel();
  out.prediction = core::reshape(logits.value(), {batch.x.size(0), batch.x.size(1), vocab});
  if (!batch.y.defined()) return;
  const Tensor target = core::reshape(batch.y, {-1, 1});
  out.loss = ag::neg(ag::mean(ag::gather(ag::log_softmax(logits, -1), 1, target)));
  const Tensor pred = core::argmax(logits.value(), 1, true);
  out.accuracy = core::mean(core::to_dtype(core::eq(pred, target), core::DType::f64)).item<double>();
}

class SequenceModel : public TaskModel {
 public:
  SequenceModel(const ModelOptions& o, std::int64_t vocab, core::Generator* gen) : o_(o), vocab_(vocab) {
    embed_ = register_module("embed", std::make_shared<nn::Embedding>(vocab, o.dim, core::TensorOptions{}, gen));
    stack_ = register_module("blocks", std::make_shared<Stack>(o, gen));
    norm_ = register_module("norm", std::make_shared<nn::RMSNorm>(o.dim));
    out_ = register_module("head", std::make_shared<nn::Linear>(o.dim, vocab, true, core::TensorOptions{}, gen));
  }
  ModelOutput forward(const Batch& batch) override {
    ModelOutput out;
    Variable h = stack_->forward(embed_->forward(batch.x), out);
    Variable logits = ag::reshape(out_->forward(norm_->forward(h)), {-1, vocab_});  // [b * n, V]
    token_outputs(logits, batch, vocab_, out);
    return out;
  }
  std::int64_t active_parameters() const override {
    return o_.dim + out_->num_parameters() + (o_.layers + 1) * o_.dim + stack_->active();
  }
  std::int64_t st_moe_active_parameters() const override { return as_st_moe(o_, active_parameters()); }
  std::string name() const override { return "SequenceModel"; }

 private:
  ModelOptions o_;
  std::int64_t vocab_;
  std::shared_ptr<nn::Embedding> embed_;
  std::shared_ptr<Stack> stack_;
  std::shared_ptr<nn::RMSNorm> norm_;
  std::shared_ptr<nn::Linear> out_;
};

// The causal transformer language model (models.h): pre-norm blocks
// h = h + attn(RMSNorm(h)); h = h + ff(RMSNorm(h)), then RMSNorm and the tied head.
class LanguageModel : public TaskModel {
 public:
  LanguageModel(const ModelOptions& o, std::int64_t vocab, core::Generator* gen) : o_(o), vocab_(vocab) {
    const core::TensorOptions f32{};
    embed_ = register_module("embed", std::make_shared<nn::Embedding>(vocab, o.dim, f32, gen));
    embed_->set_parameter("weight", Variable(core::mul(core::randn({vocab, o.dim}, f32, gen), 0.02), true));
    auto blocks = register_module("blocks", std::make_shared<nn::Module>());
    for (std::int64_t i = 0; i < o.layers; ++i) {
      auto block = blocks->register_module(std::to_string(i), std::make_shared<nn::Module>());
      attn_norms_.push_back(block->register_module("attn_norm", std::make_shared<nn::RMSNorm>(o.dim)));
      attns_.push_back(block->register_module("attn", std::make_shared<nn::CausalSelfAttention>(o.dim, o.heads, f32, gen)));
      ff_norms_.push_back(block->register_module("ff_norm", std::make_shared<nn::RMSNorm>(o.dim)));
      ffs_.push_back(block->register_module("ff", std::make_shared<FeedForward>(o, gen)));
    }
    norm_ = register_module("norm", std::make_shared<nn::RMSNorm>(o.dim));
  }
  ModelOutput forward(const Batch& batch) override {
    ModelOutput out;
    Variable h = embed_->forward(batch.x);  // [b, n, dim]
    out.aux_loss = ag::constant(core::zeros({}, {h.dtype(), h.device()}));
    for (std::size_t i = 0; i < ffs_.size(); ++i) {
      h = ag::add(h, attns_[i]->forward(attn_norms_[i]->forward(h)));
      FfOutput f = ffs_[i]->forward(ff_norms_[i]->forward(h));
      h = ag::add(h, f.y);
      if (f.aux.defined()) out.aux_loss = ag::add(out.aux_loss, ag::sum(f.aux));
      out.balance_loss += f.balance;
      out.router_z_loss += f.z;
      if (f.stats) out.routing.push_back(*f.stats);
    }
    // Tied head: logits [b * n, V] = h E^T.
    const Variable flat = ag::reshape(norm_->forward(h), {-1, o_.dim});
    const Variable logits = ag::matmul(flat, ag::transpose(embed_->parameter("weight"), 0, 1));
    token_outputs(logits, batch, vocab_, out);
    return out;
  }
  // The tied embedding once (the head reads all of it), each block's attention and norms, the
  // feed-forwards' active parameters, the final norm.
  std::int64_t active_parameters() const override {
    std::int64_t n = vocab_ * o_.dim + o_.dim;
    for (std::size_t i = 0; i < ffs_.size(); ++i) n += 4 * o_.dim * o_.dim + 2 * o_.dim + ffs_[i]->active();
    return n;
  }
  std::int64_t st_moe_active_parameters() const override { return as_st_moe(o_, active_parameters()); }
  std::string name() const override { return "LanguageModel"; }

 private:
  ModelOptions o_;
  std::int64_t vocab_;
  std::shared_ptr<nn::Embedding> embed_;
  std::vector<std::shared_ptr<nn::RMSNorm>> attn_norms_, ff_norms_;
  std::vector<std::shared_ptr<nn::CausalSelfAttention>> attns_;
  std::vector<std::shared_ptr<FeedForward>> ffs_;
  std::shared_ptr<nn::RMSNorm> norm_;
};
}  // namespace

void check_model_options(const ModelOptions& o) {
  const char* op = "model";
  MOEGRAD_CHECK(o.kind == "st_moe" || o.kind == "lucidrains" || o.kind == "hierarchical" || o.kind == "dense", op,
                "unknown model '{}': expected st_moe, lucidrains, hierarchical or dense", o.kind);
  MOEGRAD_CHECK(o.dim > 0 && o.hidden > 0 && o.layers > 0, op, "dim, hidden and layers must be > 0, got {}, {}, {}",
                o.dim, o.hidden, o.layers);
  MOEGRAD_CHECK(o.experts >= 2, op, "experts must be >= 2, got {}", o.experts);
  MOEGRAD_CHECK(o.top_n >= 1 && o.top_n <= o.experts, op, "top_n must be in [1, experts = {}], got {}", o.experts,
                o.top_n);
  if ((o.kind == "lucidrains" || o.kind == "hierarchical") && o.top_n != 2)
    fail(op, "{} routes to the top 2 experts; got top_n {}", o.kind, o.top_n);
  if (o.kind == "hierarchical")
    MOEGRAD_CHECK(o.experts_outer >= 2 && o.experts % o.experts_outer == 0 && o.experts / o.experts_outer >= 2, op,
                  "hierarchical needs experts = outer x inner with outer, inner >= 2; got {} experts, outer {}",
                  o.experts, o.experts_outer);
  MOEGRAD_CHECK(o.capacity_factor > 0, op, "capacity factor must be > 0, got {}", o.capacity_factor);
  // Only st_moe's gates draw noise: the flag would be silently ignored elsewhere.
  if (o.noise_gates && o.kind != "st_moe")
    fail(op, "--noise-gates needs --model st_moe (the {} model's gates draw no noise)", o.kind);
}

std::int64_t layer_active_parameters(const ModelOptions& o) {
  if (o.kind == "st_moe") return o.dim * o.experts + o.top_n * st_expert_parameters(o.dim, o.hidden);
  if (o.kind == "lucidrains") return o.dim * o.experts + 2 * 2 * o.dim * o.hidden;
  if (o.kind == "hierarchical") {
    const std::int64_t inner = o.experts / o.experts_outer;
    return o.dim * o.experts_outer + 2 * o.dim * inner + 2 * 2 * o.dim * o.hidden;
  }
  return st_expert_parameters(o.dim, dense_hidden(o));
}

std::int64_t dense_hidden(const ModelOptions& o) {
  ModelOptions st = o;
  st.kind = "st_moe";
  const std::int64_t target = layer_active_parameters(st), unit = 3 * o.dim + 3;
  const std::int64_t below = std::max<std::int64_t>(1, (target - o.dim) / unit), above = below + 1;
  const auto miss = [&](std::int64_t h) { return std::abs(st_expert_parameters(o.dim, h) - target); };
  return miss(above) < miss(below) ? above : below;
}

std::string capacity_factor_note(const ModelOptions& o, std::int64_t group_size) {
  if (o.kind == "dense" || o.dropless || group_size < 1 || !(o.capacity_factor > 0) || !std::isfinite(o.capacity_factor))
    return "";
  // The first gate's experts and minimum: st-moe's TopNGating takes min_expert_capacity from its
  // options; lucidrains' Top2Gating (the outer gate of hierarchical) has a fixed minimum of 4.
  const std::int64_t experts = o.kind == "hierarchical" ? o.experts_outer : o.experts;
  const std::int64_t minimum = o.kind == "st_moe" ? nn::st::MoEOptions{}.min_expert_capacity : 4;
  const auto capacity = [&](double cf) { return nn::moe::expert_capacity(group_size, cf, experts, minimum); };
  const std::int64_t at = capacity(o.capacity_factor);
  if (at > minimum) return "";
  // The smallest factor that gives more than the minimum, if any (a factor of `experts` gives
  // the whole group).
  const double top = static_cast<double>(experts);
  if (capacity(top) <= minimum)
    return fmt::format(
        "note: --capacity-factor {} has no effect: with {} tokens per sequence and {} experts the capacity is always "
        "the minimum, {} (min_expert_capacity)",
        o.capacity_factor, group_size, experts, minimum);
  double lo = o.capacity_factor, hi = top;
  for (int i = 0; i < 100 && lo < hi; ++i) {
    const double mid = lo + (hi - lo) / 2;
    if (mid <= lo || mid >= hi) break;
    (capacity(mid) > minimum ? hi : lo) = mid;
  }
  return fmt::format(
      "note: --capacity-factor {} gives capacity {} = the minimum (min_expert_capacity) for {} tokens per sequence and "
      "{} experts: the factor has no effect below {:.4g}",
      o.capacity_factor, at, group_size, experts, hi);
}

std::shared_ptr<TaskModel> make_regression_model(const ModelOptions& o, std::int64_t in_dim, std::int64_t out_dim,
                                                 core::Generator* gen) {
  check_model_options(o);
  return std::make_shared<RegressionModel>(o, in_dim, out_dim, gen);
}

std::shared_ptr<TaskModel> make_sequence_model(const ModelOptions& o, std::int64_t vocab, core::Generator* gen) {
  check_model_options(o);
  return std::make_shared<SequenceModel>(o, vocab, gen);
}

std::shared_ptr<TaskModel> make_language_model(const ModelOptions& o, std::int64_t vocab, core::Generator* gen) {
  check_model_options(o);
  MOEGRAD_CHECK(o.heads >= 1 && o.dim % o.heads == 0 && (o.dim / o.heads) % 2 == 0, "model",
                "--dim must be a multiple of --heads with an even quotient (the rotary head width), got dim {} and "
                "heads {}", o.dim, o.heads);
  return std::make_shared<LanguageModel>(o, vocab, gen);
}

}  // namespace moegrad::train
