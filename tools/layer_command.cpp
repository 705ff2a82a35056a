#include "tools/layer_command.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "core/build_info.h"
#include "core/error.h"
#include "train/hdf5.h"
#include "train/json.h"
#include "train/module_spec.h"

namespace moegrad::tools {
namespace {

constexpr const char* kHelp = R"(usage: moegrad layer --spec S.json --weights W.h5 --input I.h5 --output O.h5
                     [--backward] [--mode train|eval] [--device cpu|cuda[:N]] [--seed N]

Builds one MoE module as the original PyTorch class builds it, loads its PyTorch weights,
runs it on tensors from an HDF5 file and writes its outputs (and, with --backward, the
gradients) to another HDF5 file.

  --spec S.json      {"module": NAME, "args": {...}, "forward": {...}}: the module, its
                     constructor arguments and its forward keywords, under the originals'
                     names; "args" and "forward" may be left out, no other key is allowed.
                     NAME is one of:
{modules}
  --weights W.h5     the module's state_dict, one dataset per key: /model/<key>. Loaded
                     strictly: a missing, unexpected or mis-shaped key is an error. The module
                     computes in the weights' dtype (float32 or float64); inputs are converted.
  --input I.h5       x (required), and optionally:
                       grad_output           weights of the output in the backward's loss
                       importance            lucidrains.Top2Gating's importance input
                     and recorded random draws, each used instead of the generator's:
                       noise_uniform [b,n,e]    TopNGating gate noise U, before the gumbel
                                                transform (only with "noise_gates": true)
                       route_uniform [k,b,n]    TopNGating routing of the choices after the first
                       policy_uniform [b,n]     Top2Gating 'random' policy (in HeirarchicalMoE
                                                the outer gate's)
                       policy_uniform_inner [eo,b,co]  HeirarchicalMoE's inner gate
                       gumbel_noise [b,n,e]     MoERouter 'gumbel': the noise itself
                     A dataset the module does not read is an error that names it.
  --output O.h5      written atomically: output, aux_loss, balance_loss, router_z_loss (those
                     the module returns), dispatch and combine (gating modules), and with
                     --backward grad/x and grad/<key> for every parameter. Root attributes
                     record the module, mode, spec and moegrad version.
  --backward         also run the backward pass of
                       L = sum(output * grad_output) + the module's aux losses
                     (gating modules: sum(combine * grad_output) + their losses); without
                     grad_output in I.h5, grad_output is all ones.
  --mode train|eval  module.train() or module.eval() (default: train, like a freshly built
                     PyTorch module)
  --device D         cpu (default), cuda or cuda:N: the module (built and loaded on the CPU)
                     and the inputs are moved there and run there; outputs and gradients
                     are copied back to the host for writing. A CUDA device that is not
                     present is an error.
  --seed N           seed of the generator for the draws I.h5 does not give (default 0)
  -h, --help         show this help

Errors print one line "moegrad layer: <message>" on stderr and exit with 1 (2 for usage
errors); a summary line on stderr reports what was written.
)";

// Usage errors (exit 2) and errors of the command's own checks (exit 1, like library errors).
struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};
template <class... A>
[[noreturn]] void usage_error(fmt::format_string<A...> f, A&&... args) {
  throw UsageError(fmt::format(f, std::forward<A>(args)...));
}
template <class... A>
[[noreturn]] void error(fmt::format_string<A...> f, A&&... args) {
  throw std::runtime_error(fmt::format(f, std::forward<A>(args)...));
}

std::string help_text() {
  const std::string indent(22, ' ');
  std::string modules, line = indent;
  const auto names = train::SpecModule::module_names();
  for (std::size_t i = 0; i < names.size(); ++i) {
    const std::string item = names[i] + (i + 1 < names.size() ? "," : "");
    if (line.size() + item.size() + 1 > 92) {
      modules += line + "\n";
      line = indent;
    }
    line += " " + item;
  }
  modules += line;
  std::string text = kHelp;
  text.replace(text.find("{modules}"), 9, modules);
  return text;
}

struct Options {
  std::string spec, weights, input, output;
  bool backward = false;
  std::string mode = "train";
  core::Device device = core::Device::cpu();
  std::uint64_t seed = 0;
};

Options parse_args(int argc, char** argv) {
  Options o;
  std::vector<std::string> seen;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg.rfind("--", 0) != 0) usage_error("unexpected argument '{}'", arg);
    const auto eq = arg.find('=');
    const std::string name = arg.substr(0, eq);
    if (name == "--backward") {
      if (eq != std::string::npos) usage_error("--backward takes no value");
      o.backward = true;
      continue;
    }
    std::string* target = name == "--spec" ? &o.spec : name == "--weights" ? &o.weights
                        : name == "--input" ? &o.input : name == "--output" ? &o.output : nullptr;
    if (!target && name != "--mode" && name != "--device" && name != "--seed") usage_error("unknown option '{}'", name);
    if (std::find(seen.begin(), seen.end(), name) != seen.end()) usage_error("{} is given twice", name);
    seen.push_back(name);
    std::string value;
    if (eq != std::string::npos) {
      value = arg.substr(eq + 1);
    } else {
      if (i + 1 >= argc) usage_error("{} needs a value", name);
      value = argv[++i];
    }
    if (value.empty()) usage_error("{} needs a value", name);
    if (target) {
      *target = value;
    } else if (name == "--mode") {
      if (value != "train" && value != "eval") usage_error("--mode must be train or eval, got '{}'", value);
      o.mode = value;
    } else if (name == "--device") {
      try {
        o.device = core::Device::parse(value);
      } catch (const moegrad::Error&) {
        usage_error("--device must be cpu or cuda (cuda:N), got '{}'", value);
      }
    } else {
      const char* end = value.data() + value.size();
      auto [ptr, ec] = std::from_chars(value.data(), end, o.seed);
      if (ec != std::errc() || ptr != end) usage_error("--seed must be a non-negative integer, got '{}'", value);
    }
  }
  for (const auto& [flag, value] : {std::pair{"--spec", &o.spec}, {"--weights", &o.weights}, {"--input", &o.input},
                                    {"--output", &o.output}})
    if (value->empty()) usage_error("missing {} (required: --spec, --weights, --input, --output)", flag);
  return o;
}

// Before any work: a CUDA device must be present.
void check_device(core::Device d) {
  if (const std::string why = core::device_unavailable(d); !why.empty()) error("--device {} but {}", d.str(), why);
}

struct Spec {
  std::string module;
  json::Value args = json::Value::object();
  json::Value forward = json::Value::object();
  json::Value root;
};

Spec read_spec(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) error("cannot read the spec '{}': {}", path, std::strerror(errno));
  std::ostringstream text;
  text << in.rdbuf();
  Spec s;
  try {
    s.root = json::parse(text.str());
  } catch (const moegrad::Error& e) {
    error("{}: {}", path, e.what());
  }
  const auto names = train::SpecModule::module_names();
  if (!s.root.is_object())
    error("{}: the spec must be a JSON object {{\"module\": ..., \"args\": {{...}}, \"forward\": {{...}}}}, got {}",
          path, json::type_name(s.root.type()));
  for (const auto& [key, value] : s.root.as_object())
    if (key != "module" && key != "args" && key != "forward")
      error("{}: unknown key '{}' (allowed: module, args, forward)", path, key);
  const json::Value* module = s.root.find("module");
  if (!module || !module->is_string())
    error("{}: \"module\" must be a string naming the module (one of: {})", path, fmt::join(names, ", "));
  s.module = module->as_string();
  for (const auto& [key, target] : {std::pair{"args", &s.args}, {"forward", &s.forward}}) {
    const json::Value* v = s.root.find(key);
    if (!v || v->is_null()) continue;
    if (!v->is_object()) error("{}: \"{}\" must be an object, got {}", path, key, json::dump(*v));
    *target = *v;
  }
  return s;
}

nn::StateDict read_weights(const std::string& path) {
  const h5::File f = h5::File::open(path);
  if (!f.exists("/model")) error("{}: no group /model (the weights go under /model/<state_dict key>)", path);
  return h5::read_state_dict(f, "/model");
}

// The weights' floating dtype (float32 when there is none).
core::DType dtype_of(const nn::StateDict& sd) {
  for (const auto& [key, t] : sd)
    if (core::is_floating(t.dtype())) return t.dtype();
  return core::DType::f32;
}

struct Inputs {
  core::Tensor x, grad_output;
  train::NamedTensors named;  // importance and draws
  std::vector<std::string> read;
};

Inputs read_inputs(const std::string& path, const train::SpecModule& m, core::DType dtype) {
  const h5::File f = h5::File::open(path);
  std::vector<std::string> allowed{"x", "grad_output"};
  for (const auto& name : m.inputs()) allowed.push_back(name);
  Inputs in;
  for (const auto& name : f.list("/", /*recursive=*/true)) {
    if (std::find(allowed.begin(), allowed.end(), name) == allowed.end())
      error("{}: dataset '{}' is not an input of {} (allowed: {})", path, name, m.name(), fmt::join(allowed, ", "));
    core::Tensor t = f.read(name);
    if (!core::is_floating(t.dtype()))
      error("{}: dataset '{}' is {}, expected float32 or float64", path, name, core::describe(t));
    t = core::to_dtype(t, dtype);
    if (name == "x") in.x = t;
    else if (name == "grad_output") in.grad_output = t;
    else in.named[name] = t;
    in.read.push_back(name);
  }
  if (!in.x.defined()) error("{}: no dataset 'x' (the module's input; allowed: {})", path, fmt::join(allowed, ", "));
  return in;
}

const ag::Variable& output_named(const train::NamedVariables& outs, const std::string& name) {
  for (const auto& [key, value] : outs)
    if (key == name) return value;
  error("the module returned no '{}'", name);
}

int run(const Options& o) {
  check_device(o.device);
  const Spec spec = read_spec(o.spec);
  const nn::StateDict weights = read_weights(o.weights);
  const core::DType dtype = dtype_of(weights);

  // Built and loaded on the CPU, then moved: the same module on every device.
  core::Generator gen(o.seed);
  auto m = train::SpecModule::create(spec.module, spec.args, {dtype, core::Device::cpu()}, &gen);
  gen.manual_seed(o.seed);  // the draws depend on --seed only, not on what initialisation consumed
  m->module().train(o.mode == "train");
  m->module().load_state_dict(weights, /*strict=*/true);
  m->module().to(o.device);
  Inputs in = read_inputs(o.input, *m, dtype);
  in.x = core::to_device(in.x, o.device);
  if (in.grad_output.defined()) in.grad_output = core::to_device(in.grad_output, o.device);
  for (auto& [name, t] : in.named) t = core::to_device(t, o.device);

  ag::Variable x(in.x, /*requires_grad=*/o.backward);
  train::NamedVariables outs;
  {
    std::optional<ag::NoGradGuard> no_grad;
    if (!o.backward) no_grad.emplace();
    outs = m->forward(x, in.named, spec.forward);
  }
  double loss = 0;
  nn::StateDict grads;
  core::Tensor grad_x;
  if (o.backward) {
    const core::Tensor grad_output =
        in.grad_output.defined() ? in.grad_output
                                 : core::ones(output_named(outs, m->primary()).shape(), {dtype, o.device});
    ag::Variable l = train::spec_loss(*m, outs, grad_output);
    loss = l.item<double>();
    l.backward();
    grads = m->module().grad_dict();
    grad_x = x.grad().defined() ? x.grad() : core::zeros(in.x.shape(), {dtype, o.device});
  }

  // Everything written is a host copy.
  const auto host = [](const core::Tensor& t) { return core::to_device(t, core::Device::cpu()); };
  std::vector<std::string> written;
  h5::write_atomically(o.output, [&](h5::File& f) {
    for (const auto& [key, value] : outs) {
      f.write(key, host(value.value()));
      written.push_back(fmt::format("{} {}", key, core::shape_str(value.shape())));
    }
    if (o.backward) {
      f.write("grad/x", host(grad_x));
      for (const auto& [key, g] : grads) f.write("grad/" + key, host(g));
      f.set_attribute("loss_value", loss);
    }
    f.set_attribute("producer", "moegrad layer");
    f.set_attribute("moegrad_version", core::build_info().version);
    f.set_attribute("module", m->name());
    f.set_attribute("mode", o.mode);
    f.set_attribute("device", o.device.str());
    f.set_attribute("dtype", core::dtype_name(dtype));
    f.set_attribute("spec_json", json::dump(spec.root));
    json::Value read = json::Value::array();
    for (const auto& name : in.read) read.push_back(name);
    f.set_attribute("inputs_json", json::dump(read));
    f.set_attribute("backward", o.backward ? 1 : 0);
    f.set_attribute("seed", static_cast<std::int64_t>(o.seed));
  });

  std::string grads_note;
  if (o.backward) grads_note = fmt::format(", grad/x and {} parameter gradients (L = {:.6g})", grads.size(), loss);
  else if (in.grad_output.defined()) grads_note = " (grad_output unused without --backward)";
  fmt::print(stderr, "moegrad layer: {} ({}, {}, {}) x {} -> {}: {}{}\n", m->name(), o.mode, o.device.str(),
             core::dtype_name(dtype), core::shape_str(in.x.shape()), o.output, fmt::join(written, ", "), grads_note);
  return 0;
}

// Library messages may span lines; the command's error is one line.
std::string one_line(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  std::string out;
  for (char c : s) {
    if (c == '\n') out += "; ";
    else out += c;
  }
  return out;
}

}  // namespace

int run_layer_command(int argc, char** argv) {
  for (int i = 1; i < argc; ++i)
    if (!std::strcmp(argv[i], "-h") || !std::strcmp(argv[i], "--help")) {
      fmt::print("{}", help_text());
      return 0;
    }
  try {
    return run(parse_args(argc, argv));
  } catch (const UsageError& e) {
    fmt::print(stderr, "moegrad layer: {} (see moegrad layer --help)\n", one_line(e.what()));
    return 2;
  } catch (const std::exception& e) {
    fmt::print(stderr, "moegrad layer: {}\n", one_line(e.what()));
    return 1;
  }
}

}  // namespace moegrad::tools
