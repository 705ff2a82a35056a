#include "tools/layer_command.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "core/build_info.h"
#include "core/error.h"
#include "core/precision.h"
#include "train/hdf5.h"
#include "tools/cli.h"
#include "train/json_read.h"
#include "train/module_spec.h"

namespace moegrad::tools {
namespace {

constexpr const char* kHelp = R"(usage: moegrad layer --spec S.json --weights W.h5 --input I.h5 --output O.h5
                     [--backward] [--mode train|eval] [--device cpu|cuda[:N]] [--seed N]
                     [--precision fp32|bf16]

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
  --precision P      fp32 (default) or bf16: the expert and dense GEMMs (forward and
                     backward) take bf16 operands with FP32 accumulation; the weights,
                     the router, the losses and everything written stay FP32 (float32
                     weights only)
  -h, --help         show this help

Errors print one line "moegrad layer: <message>" on stderr and exit with 1 (2 for usage
errors); a summary line on stderr reports what was written.
)";

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
  core::Precision precision = core::Precision::fp32;
};

// The flags, through CLI11; --help prints help_text() (it lists the modules and the datasets).
void add_options(CLI::App& app, Options& o) {
  for (const auto& [flag, target] : {std::pair{"--spec", &o.spec}, {"--weights", &o.weights}, {"--input", &o.input},
                                     {"--output", &o.output}})
    app.add_option(flag, *target)->check(cli::checked_by([flag = std::string(flag)](const std::string& v) {
      if (v.empty()) throw std::runtime_error(flag + " needs a value");
    }, ""));
  app.add_flag("--backward", o.backward)->disable_flag_override();
  app.add_option("--mode", o.mode)->check(cli::checked_by([](const std::string& v) {
    if (v != "train" && v != "eval") throw std::runtime_error(fmt::format("--mode must be train or eval, got '{}'", v));
  }, ""));
  app.add_option_function<std::string>("--device", [&o](const std::string& v) { o.device = core::Device::parse(v); })
      ->check(cli::checked_by([](const std::string& v) {
        try {
          core::Device::parse(v);
        } catch (const moegrad::Error&) {
          throw std::runtime_error(fmt::format("--device must be cpu or cuda (cuda:N), got '{}'", json::elide(v)));
        }
      }, ""));
  app.add_option_function<std::string>("--seed", [&o](const std::string& v) { o.seed = train::parse_unsigned("--seed", v); })
      ->check(cli::checked_by([](const std::string& v) { train::parse_unsigned("--seed", v); }, ""));
  app.add_option_function<std::string>("--precision",
                                       [&o](const std::string& v) { o.precision = core::parse_precision(v, "--precision"); })
      ->check(cli::checked_by([](const std::string& v) {
        if (v != "fp32" && v != "bf16")
          throw std::runtime_error(fmt::format("--precision must be fp32 or bf16, got '{}'", json::elide(v)));
      }, ""));
}

// Required flags, checked after parsing (so --help works alone).
void check_required(const Options& o) {
  for (const auto& [flag, value] : {std::pair{"--spec", &o.spec}, {"--weights", &o.weights}, {"--input", &o.input},
                                    {"--output", &o.output}})
    if (value->empty())
      throw cli::UsageError(
          fmt::format("missing {} (required: --spec, --weights, --input, --output; see moegrad layer --help)", flag));
}

// Before any work: a CUDA device must be present.
void check_device(core::Device d) {
  if (const std::string why = core::device_unavailable(d); !why.empty()) error("--device {} but {}", d.str(), why);
}

struct Spec {
  std::string module;
  std::shared_ptr<const json::Json> doc;  // the file's object; args and forward point into it
  json::Node args, forward;
};

// The spec file: an object of at most 1 MiB with module, args and forward. Errors name the file
// and the path in it ("[layer spec] 'S.json': 'args.dim': must be in [1, 16777216], got 0").
Spec read_spec(const std::string& path) {
  constexpr const char* op = "layer spec";
  Spec s;
  s.doc = std::make_shared<const json::Json>(json::read_object_file(path, op));
  const json::Node root(*s.doc, op, path);
  const auto names = train::SpecModule::module_names();
  for (const auto& [key, value] : root.members())
    if (key != "module" && key != "args" && key != "forward")
      root.error(fmt::format("unknown key '{}' (allowed: module, args, forward)", json::elide(key)));
  const auto module = root.find("module");
  if (!module || !module->is_string())
    root.error(fmt::format("\"module\" must be a string naming the module (one of: {})", fmt::join(names, ", ")));
  s.module = module->as_string();
  static const json::Json kEmpty = json::Json::object();
  for (const auto& [key, target] : {std::pair{"args", &s.args}, {"forward", &s.forward}}) {
    const auto v = root.find(key);
    if (!v || v->is_null()) {
      *target = json::Node(kEmpty, op, path, key);
      continue;
    }
    if (!v->is_object()) v->error(fmt::format("must be an object, got {}", json::elide(json::dump(v->value()))));
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

// Injected tensors hold what the module could have drawn or computed: x, grad_output and
// importance finite, the uniform draws in [0, 1), gumbel_noise finite. Checked in the dtype
// the module computes in; the error names the dataset and its first bad element.
void check_values(const std::string& path, const std::string& name, const core::Tensor& t) {
  const bool uniform = name.find("uniform") != std::string::npos;
  const auto values = t.to_vector<double>();
  for (std::size_t i = 0; i < values.size(); ++i) {
    const double v = values[i];
    if (uniform ? (v >= 0 && v < 1) : std::isfinite(v)) continue;
    std::vector<std::int64_t> index(t.shape().size());
    std::size_t flat = i;
    for (std::size_t d = index.size(); d-- > 0;) {
      const auto n = static_cast<std::size_t>(t.shape()[d]);
      index[d] = static_cast<std::int64_t>(n ? flat % n : 0);
      flat = n ? flat / n : 0;
    }
    error("{}: dataset '{}' must hold {}; element [{}] is {}", path, name,
          uniform ? "uniform draws in [0, 1)" : "finite values", fmt::join(index, ", "), v);
  }
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
    check_values(path, name, t);
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
  if (o.precision == core::Precision::bf16 && dtype != core::DType::f32)
    error("--precision bf16 needs float32 weights, got {}", core::dtype_name(dtype));
  const core::GemmPrecisionScope precision(o.precision);  // forward and backward

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
    f.set_attribute("precision", core::precision_name(o.precision));
    f.set_attribute("spec_json", json::dump(*spec.doc));
    f.set_attribute("inputs_json", json::dump(json::Json(in.read)));
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

}  // namespace

int run_layer_command(int argc, char** argv) {
  CLI::App app{"", "moegrad layer"};
  Options o;
  add_options(app, o);
  return cli::run(
      app, argc, argv,
      [&] {
        check_required(o);
        return run(o);
      },
      help_text);
}

}  // namespace moegrad::tools
