#include "train/module_spec.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <functional>
#include <optional>
#include <set>

#include "core/error.h"

namespace moegrad::train {

namespace {
constexpr const char* kOp = "layer spec";

// Bounds of the originals' arguments: sizes and counts, and factors/coefficients (finite).
constexpr std::int64_t kMaxSize = std::int64_t{1} << 24;
constexpr double kMaxFactor = 1e6;

// The originals' arguments of one module; each is read once, checked against its range, and
// finish() rejects the rest. Errors name the spec file and the path ("'args.dim': ...").
class Args {
 public:
  Args(std::string module, const json::Node& args) : module_(std::move(module)), args_(args) {
    if (!args.is_null() && !args.is_object())
      args.error(fmt::format("{}: \"args\" must be an object, got {}", module_, json::elide(json::dump(args.value()))));
  }
  std::optional<json::Node> take(const char* key) {
    used_.insert(key);
    auto v = args_.is_object() ? args_.find(key) : std::nullopt;
    return v && !v->is_null() ? v : std::nullopt;
  }
  // An integer in [lo, hi] (1e3 is 1000; 1.5 is an error).
  std::int64_t integer(const char* key, std::int64_t fallback, std::int64_t lo = 1, std::int64_t hi = kMaxSize) {
    const auto v = take(key);
    return v ? v->as_int(lo, hi) : fallback;
  }
  std::int64_t required(const char* key, std::int64_t lo = 1, std::int64_t hi = kMaxSize) {
    const auto v = take(key);
    if (!v) fail(kOp, "{}: missing argument '{}'", module_, key);
    return v->as_int(lo, hi);
  }
  // A finite number in [lo, hi] ((lo, hi] when positive).
  double number(const char* key, double fallback, double lo = 0, double hi = kMaxFactor, bool positive = false) {
    const auto v = take(key);
    return v ? checked(*v, lo, hi, positive) : fallback;
  }
  bool flag(const char* key, bool fallback) {
    const auto v = take(key);
    return v ? v->as_bool() : fallback;
  }
  std::string text(const char* key, std::string fallback) {
    const auto v = take(key);
    return v ? v->as_string() : fallback;
  }
  // A number or a list of numbers, each in [lo, hi].
  std::vector<double> numbers(const char* key, std::vector<double> fallback, double lo = 0, double hi = kMaxFactor) {
    const auto v = take(key);
    if (!v) return fallback;
    if (v->is_number()) return {checked(*v, lo, hi, false)};
    std::vector<double> out;
    for (const auto& e : v->as_array()) out.push_back(checked(e, lo, hi, false));
    return out;
  }
  std::vector<std::int64_t> integers(const char* key, std::vector<std::int64_t> fallback) {
    const auto v = take(key);
    if (!v) return fallback;
    if (v->is_number()) return {v->as_int(1, kMaxSize)};
    std::vector<std::int64_t> out;
    for (const auto& e : v->as_array()) out.push_back(e.as_int(1, kMaxSize));
    return out;
  }
  // Options of the originals that do nothing on one device; accepted at their inert values.
  void inert(const char* key, const char* why) {
    const auto v = take(key);
    if (v && !(v->is_bool() && !v->as_bool()))
      fail(kOp, "{}: argument '{}' = {} is not supported ({})", module_, key, json::elide(json::dump(v->value())), why);
  }
  std::optional<json::Node> sub(const char* key) { return take(key); }
  void finish() const {
    if (!args_.is_object()) return;
    std::vector<std::string> unknown;
    for (const auto& [k, v] : args_.members())
      if (!used_.count(k)) unknown.push_back(json::elide(k));
    if (!unknown.empty())
      fail(kOp, "{}: unknown argument{} '{}' (known: {})", module_, unknown.size() > 1 ? "s" : "",
           fmt::join(unknown, "', '"), fmt::join(used_, ", "));
  }
  const std::string& module() const { return module_; }

 private:
  static double checked(const json::Node& v, double lo, double hi, bool positive) {
    const double d = v.as_double();  // finite: the parser rejects the rest
    if (positive ? !(d > lo && d <= hi) : !(d >= lo && d <= hi))
      v.error(fmt::format("must be in {}{:g}, {:g}], got {:g}", positive ? '(' : '[', lo, hi, d));
    return d;
  }
  std::string module_;
  json::Node args_;  // a view: the document outlives the module's construction
  std::set<std::string> used_;
};

// Forward keywords, read the same way.
struct ForwardArgs {
  bool noise_gates = false;
  double noise_mult = 1.0;
};
ForwardArgs read_forward(const std::string& module, const json::Node& fwd, bool has_noise) {
  Args a(module + " forward", fwd);
  ForwardArgs f;
  if (has_noise) {
    f.noise_gates = a.flag("noise_gates", false);
    f.noise_mult = a.number("noise_mult", 1.0);
  }
  a.finish();
  return f;
}

core::Tensor maybe(const NamedTensors& in, const char* name) {
  auto it = in.find(name);
  return it == in.end() ? core::Tensor{} : it->second;
}
nn::moe::Draws draws_of(const NamedTensors& in) {
  nn::moe::Draws d;
  d.noise_uniform = maybe(in, "noise_uniform");
  d.route_uniform = maybe(in, "route_uniform");
  d.policy_uniform = maybe(in, "policy_uniform");
  d.policy_uniform_inner = maybe(in, "policy_uniform_inner");
  d.gumbel_noise = maybe(in, "gumbel_noise");
  return d;
}

std::shared_ptr<nn::UnaryModule> activation(const std::string& module, const std::string& name) {
  if (name == "GELU") return std::make_shared<nn::GELU>();
  if (name == "ReLU") return std::make_shared<nn::ReLU>();
  if (name == "LeakyReLU") return std::make_shared<nn::LeakyReLU>();
  fail(kOp, "{}: unknown activation '{}' (known: GELU, ReLU, LeakyReLU)", module, name);
}

using Runner = std::function<NamedVariables(const ag::Variable&, const NamedTensors&, const json::Node&)>;

class Built final : public SpecModule {
 public:
  Built(std::string name, std::shared_ptr<nn::Module> m, Runner run, std::string primary, std::vector<std::string> losses,
        std::vector<std::string> inputs = {})
      : module_(std::move(m)), run_(std::move(run)), primary_(std::move(primary)), losses_(std::move(losses)),
        inputs_(std::move(inputs)) {
    name_ = std::move(name);
  }
  nn::Module& module() override { return *module_; }
  NamedVariables forward(const ag::Variable& x, const NamedTensors& in, const json::Node& fwd) override {
    return run_(x, in, fwd);
  }
  std::string primary() const override { return primary_; }
  std::vector<std::string> losses() const override { return losses_; }
  std::vector<std::string> inputs() const override { return inputs_; }

 private:
  std::shared_ptr<nn::Module> module_;
  Runner run_;
  std::string primary_;
  std::vector<std::string> losses_;
  std::vector<std::string> inputs_;
};
using Names = std::vector<std::string>;

using Builder = std::function<std::unique_ptr<SpecModule>(Args&, core::TensorOptions, core::Generator*)>;

// ---- lucidrains/mixture-of-experts ------------------------------------------------------------
// The routing options Top2Gating and the MoEs built on it share (same names in both structs).
template <class Options>
void read_top2_routing(Args& a, Options& o) {
  o.second_policy_train = a.text("second_policy_train", "random");
  o.second_policy_eval = a.text("second_policy_eval", "random");
  o.second_threshold_train = a.number("second_threshold_train", 0.2);
  o.second_threshold_eval = a.number("second_threshold_eval", 0.2);
  o.capacity_factor_train = a.number("capacity_factor_train", 1.25, 0, kMaxFactor, /*positive=*/true);
  o.capacity_factor_eval = a.number("capacity_factor_eval", 2.0, 0, kMaxFactor, /*positive=*/true);
}

nn::lmoe::MoEOptions lmoe_options(Args& a) {
  nn::lmoe::MoEOptions o;
  o.hidden_dim = a.integer("hidden_dim", 0, 0);
  o.activation = activation(a.module(), a.text("activation", "ReLU"));
  read_top2_routing(a, o);
  o.loss_coef = a.number("loss_coef", 1e-2);
  o.dropless = a.flag("dropless", false);
  a.inert("experts", "custom experts cannot be given in JSON");
  return o;
}

std::unique_ptr<SpecModule> lmoe_experts(Args& a, core::TensorOptions opt, core::Generator* gen) {
  const auto dim = a.required("dim");
  auto counts = a.integers("num_experts", {16});
  auto hidden = a.integer("hidden_dim", 0, 0);
  auto act = activation(a.module(), a.text("activation", "GELU"));
  auto m = std::make_shared<nn::lmoe::Experts>(dim, counts, hidden, act, opt, gen);
  const std::string name = a.module();
  return std::make_unique<Built>(name, m, [m, name](const ag::Variable& x, const NamedTensors&, const json::Node& fwd) {
    read_forward(name, fwd, false);
    return NamedVariables{{"output", m->forward(x)}};
  }, "output", std::vector<std::string>{});
}

std::unique_ptr<SpecModule> lmoe_top2_gating(Args& a, core::TensorOptions opt, core::Generator* gen) {
  const auto dim = a.required("dim");
  const auto gates = a.required("num_gates");
  nn::lmoe::Top2GatingOptions o;
  o.eps = a.number("eps", 1e-9, 0, 1);
  o.outer_expert_dims = a.integers("outer_expert_dims", {});
  read_top2_routing(a, o);
  o.dropless = a.flag("dropless", false);
  auto m = std::make_shared<nn::lmoe::Top2Gating>(dim, gates, o, opt, gen);
  const std::string name = a.module();
  return std::make_unique<Built>(name, m, [m, name](const ag::Variable& x, const NamedTensors& in, const json::Node& fwd) {
    read_forward(name, fwd, false);
    auto r = m->forward(x, maybe(in, "importance"), maybe(in, "policy_uniform"));
    return NamedVariables{{"dispatch", r.dispatch}, {"combine", r.combine}, {"aux_loss", r.balance_loss}};
  }, "combine", Names{"aux_loss"}, Names{"importance", "policy_uniform"});
}

std::unique_ptr<SpecModule> lmoe_moe(Args& a, core::TensorOptions opt, core::Generator* gen) {
  const auto dim = a.required("dim");
  const auto experts = a.integer("num_experts", 16);
  auto m = std::make_shared<nn::lmoe::MoE>(dim, experts, lmoe_options(a), opt, gen);
  const std::string name = a.module();
  return std::make_unique<Built>(name, m, [m, name](const ag::Variable& x, const NamedTensors& in, const json::Node& fwd) {
    read_forward(name, fwd, false);
    auto r = m->forward(x, {.draws = draws_of(in)});
    return NamedVariables{{"output", r.output}, {"aux_loss", r.aux_loss}};
  }, "output", Names{"aux_loss"}, Names{"policy_uniform"});
}

std::unique_ptr<SpecModule> lmoe_hmoe(Args& a, core::TensorOptions opt, core::Generator* gen) {
  const auto dim = a.required("dim");
  const auto counts = a.integers("num_experts", {4, 4});
  MOEGRAD_CHECK(counts.size() == 2, kOp, "{}: num_experts must be [outer, inner], got [{}]", a.module(),
                fmt::join(counts, ", "));
  auto m = std::make_shared<nn::lmoe::HeirarchicalMoE>(dim, std::pair{counts[0], counts[1]}, lmoe_options(a), opt, gen);
  const std::string name = a.module();
  return std::make_unique<Built>(name, m, [m, name](const ag::Variable& x, const NamedTensors& in, const json::Node& fwd) {
    read_forward(name, fwd, false);
    auto r = m->forward(x, {.draws = draws_of(in)});
    return NamedVariables{{"output", r.output}, {"aux_loss", r.aux_loss}};
  }, "output", Names{"aux_loss"}, Names{"policy_uniform", "policy_uniform_inner"});
}

// ---- st-moe-pytorch and zeta --------------------------------------------------------------------
// The routing options TopNGating and st-moe's MoE share (same names in both structs).
template <class Options>
void read_top_n_routing(Args& a, Options& o) {
  o.threshold_train = a.numbers("threshold_train", {0.2});
  o.threshold_eval = a.numbers("threshold_eval", {0.2});
  o.capacity_factor_train = a.number("capacity_factor_train", 1.25, 0, kMaxFactor, /*positive=*/true);
  o.capacity_factor_eval = a.number("capacity_factor_eval", 2.0, 0, kMaxFactor, /*positive=*/true);
  o.straight_through_dispatch_tensor = a.flag("straight_through_dispatch_tensor", true);
  o.differentiable_topk = a.flag("differentiable_topk", false);
  o.differentiable_topk_fused = a.flag("differentiable_topk_fused", true);
}

std::unique_ptr<SpecModule> top_n_gating(Args& a, core::TensorOptions opt, core::Generator* gen, bool zeta) {
  const auto dim = a.required("dim");
  const auto gates = a.required("num_gates");
  nn::st::TopNGatingOptions o;
  o.eps = a.number("eps", 1e-9, 0, 1);
  o.top_n = a.integer("top_n", 2);
  read_top_n_routing(a, o);
  if (zeta) o.min_expert_capacity = a.integer("min_expert_capacity", 4, 0);
  o.dropless = a.flag("dropless", false);
  auto m = std::make_shared<nn::st::TopNGating>(dim, gates, o, opt, gen);
  const std::string name = a.module();
  return std::make_unique<Built>(name, m, [m, name](const ag::Variable& x, const NamedTensors& in, const json::Node& fwd) {
    const ForwardArgs f = read_forward(name, fwd, true);
    auto r = m->forward(x, f.noise_gates, f.noise_mult, draws_of(in));
    return NamedVariables{{"dispatch", r.dispatch}, {"combine", r.combine}, {"balance_loss", r.balance_loss},
                          {"router_z_loss", r.router_z_loss}};
  }, "combine", Names{"balance_loss", "router_z_loss"}, Names{"noise_uniform", "route_uniform"});
}

std::shared_ptr<nn::st::MoE> make_st_moe(Args& a, core::TensorOptions opt, core::Generator* gen) {
  const auto dim = a.required("dim");
  const auto experts = a.integer("num_experts", 16);
  nn::st::MoEOptions o;
  o.expert_hidden_mult = a.number("expert_hidden_mult", 4.0, 0, 1024, /*positive=*/true);
  read_top_n_routing(a, o);
  o.gating_top_n = a.integer("gating_top_n", 2);
  o.balance_loss_coef = a.number("balance_loss_coef", 1e-2);
  o.router_z_loss_coef = a.number("router_z_loss_coef", 1e-3);
  o.eps = a.number("eps", 1e-9, 0, 1);
  o.dropless = a.flag("dropless", false);
  a.inert("experts", "custom experts cannot be given in JSON");
  a.inert("is_distributed", "one process");
  a.inert("allow_var_seq_len", "one process");
  return std::make_shared<nn::st::MoE>(dim, experts, o, opt, gen);
}

template <class M>
Runner st_runner(std::shared_ptr<M> m, std::string name) {
  return [m, name](const ag::Variable& x, const NamedTensors& in, const json::Node& fwd) {
    const ForwardArgs f = read_forward(name, fwd, true);
    auto r = m->forward(x, f.noise_gates, f.noise_mult, draws_of(in));
    return NamedVariables{{"output", r.output}, {"aux_loss", r.aux_loss}, {"balance_loss", r.balance_loss},
                          {"router_z_loss", r.router_z_loss}};
  };
}

std::unique_ptr<SpecModule> st_moe(Args& a, core::TensorOptions opt, core::Generator* gen) {
  auto m = make_st_moe(a, opt, gen);
  return std::make_unique<Built>(a.module(), m, st_runner(m, a.module()), "output", Names{"aux_loss"},
                                 Names{"noise_uniform", "route_uniform"});
}

std::unique_ptr<SpecModule> st_block(Args& a, core::TensorOptions opt, core::Generator* gen) {
  const auto inner = a.sub("moe");
  if (!inner) fail(kOp, "{}: missing argument 'moe' ({{\"module\": \"st_moe.MoE\", \"args\": {{...}}}})", a.module());
  Args outer_moe(a.module() + ".moe", *inner);
  const std::string kind = outer_moe.text("module", "st_moe.MoE");
  MOEGRAD_CHECK(kind == "st_moe.MoE", kOp, "{}: 'moe' must be an st_moe.MoE, got '{}'", a.module(), kind);
  const auto moe_args = outer_moe.sub("args");
  outer_moe.finish();
  static const json::Json kEmpty = json::Json::object();
  Args inner_args("st_moe.MoE", moe_args ? *moe_args : json::Node(kEmpty, kOp));
  auto moe = make_st_moe(inner_args, opt, gen);
  inner_args.finish();
  const bool before = a.flag("add_ff_before", false), after = a.flag("add_ff_after", true);
  auto m = std::make_shared<nn::st::SparseMoEBlock>(moe, before, after, gen);
  return std::make_unique<Built>(a.module(), m, st_runner(m, a.module()), "output", Names{"aux_loss"},
                                 Names{"noise_uniform", "route_uniform"});
}

std::unique_ptr<SpecModule> st_expert(Args& a, core::TensorOptions opt, core::Generator* gen) {
  const auto dim = a.required("dim");
  auto m = std::make_shared<nn::st::Expert>(dim, a.number("hidden_mult", 4.0, 0, 1024, /*positive=*/true), a.flag("mult_bias", true),
                                            a.flag("prenorm", false), opt, gen);
  const std::string name = a.module();
  return std::make_unique<Built>(name, m, [m, name](const ag::Variable& x, const NamedTensors&, const json::Node& fwd) {
    read_forward(name, fwd, false);
    return NamedVariables{{"output", m->forward(x)}};
  }, "output", std::vector<std::string>{});
}

std::unique_ptr<SpecModule> zeta_experts(Args& a, core::TensorOptions opt, core::Generator* gen) {
  const auto dim = a.required("dim");
  a.inert("custom_experts", "unused by the original");
  auto m = std::make_shared<nn::zeta::Experts>(dim, a.integer("experts", 16), opt, gen);
  const std::string name = a.module();
  return std::make_unique<Built>(name, m, [m, name](const ag::Variable& x, const NamedTensors&, const json::Node& fwd) {
    read_forward(name, fwd, false);
    return NamedVariables{{"output", m->forward(x)}};
  }, "output", std::vector<std::string>{});
}

std::unique_ptr<SpecModule> zeta_router(Args& a, core::TensorOptions opt, core::Generator* gen) {
  const auto dim = a.required("dim");
  const auto experts = a.required("num_experts");
  auto m = std::make_shared<nn::zeta::MoERouter>(dim, experts, a.integers("hidden_layers", {}),
                                                 a.text("mechanism", "softmax"), opt, gen);
  const std::string name = a.module();
  return std::make_unique<Built>(name, m, [m, name](const ag::Variable& x, const NamedTensors& in, const json::Node& fwd) {
    read_forward(name, fwd, false);
    return NamedVariables{{"output", m->forward(x, draws_of(in))}};
  }, "output", Names{}, Names{"gumbel_noise"});
}

const std::map<std::string, Builder>& registry() {
  static const std::map<std::string, Builder> r{
      {"lucidrains.Experts", lmoe_experts},
      {"lucidrains.Top2Gating", lmoe_top2_gating},
      {"lucidrains.MoE", lmoe_moe},
      {"lucidrains.HeirarchicalMoE", lmoe_hmoe},
      {"st_moe.TopNGating", [](Args& a, auto o, auto g) { return top_n_gating(a, o, g, false); }},
      {"st_moe.MoE", st_moe},
      {"st_moe.SparseMoEBlock", st_block},
      {"st_moe.Expert", st_expert},
      {"zeta.Experts", zeta_experts},
      {"zeta.MoERouter", zeta_router},
      {"zeta.TopNGating", [](Args& a, auto o, auto g) { return top_n_gating(a, o, g, true); }},
  };
  return r;
}
}  // namespace

std::unique_ptr<SpecModule> SpecModule::create(const std::string& module, const json::Node& args,
                                               core::TensorOptions options, core::Generator* gen) {
  std::string key = module.rfind("lmoe.", 0) == 0 ? "lucidrains." + module.substr(5) : module;
  auto it = registry().find(key);
  if (it == registry().end())
    fail(kOp, "unknown module '{}' (known: {})", module, fmt::join(module_names(), ", "));
  Args a(key, args);
  auto built = it->second(a, options, gen);
  a.finish();
  return built;
}

std::vector<std::string> SpecModule::module_names() {
  std::vector<std::string> names;
  for (const auto& [k, v] : registry()) names.push_back(k);
  return names;
}

const std::vector<std::string>& SpecModule::input_names() {
  static const std::vector<std::string> names{"importance", "noise_uniform", "route_uniform",
                                              "policy_uniform", "policy_uniform_inner", "gumbel_noise"};
  return names;
}

ag::Variable spec_loss(const SpecModule& m, const NamedVariables& outputs, const core::Tensor& grad_output) {
  auto find = [&](const std::string& name) -> const ag::Variable& {
    for (const auto& [k, v] : outputs)
      if (k == name) return v;
    fail(kOp, "{}: no output '{}'", m.name(), name);
  };
  const ag::Variable& primary = find(m.primary());
  MOEGRAD_CHECK(grad_output.shape() == primary.shape(), kOp, "{}: grad_output must have {}'s shape {}, got {}", m.name(),
                m.primary(), core::shape_str(primary.shape()), core::describe(grad_output));
  ag::Variable loss = ag::sum(ag::mul(primary, ag::constant(core::to_dtype(grad_output, primary.dtype()))));
  for (const auto& l : m.losses()) loss = ag::add(loss, ag::sum(find(l)));
  return loss;
}

}  // namespace moegrad::train
