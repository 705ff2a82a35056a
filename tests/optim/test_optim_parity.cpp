// optim against PyTorch 1.13: tests/reference/fixtures_optim/optim_steps.h5 (layout in
// tests/reference/fixtures_optim/README.md) replays 5 optimizer steps per configuration and
// checks every parameter and state tensor after every step, plus clipping and schedules.
#include <doctest/doctest.h>
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "core/ops.h"
#include "optim/optim.h"
#include "tests/reference/fixture.h"
#include "train/hdf5.h"
#include "train/json_read.h"

namespace core = moegrad::core;
namespace h5 = moegrad::h5;
namespace json = moegrad::json;
namespace nn = moegrad::nn;
namespace optim = moegrad::optim;
namespace ag = moegrad::ag;
using core::Tensor;
using moegrad::test::check_close;
using moegrad::test::check_equal;

namespace {

const std::string kFixture = MOEGRAD_FIXTURE_DIR "/../fixtures_optim/optim_steps.h5";

const h5::File& fixture() {
  static const h5::File f = h5::File::open(kFixture);
  return f;
}

// The attribute's JSON document (parsed once, kept for the nodes that view it), rooted at its name.
json::Node root_json(const char* attribute) {
  static std::map<std::string, json::Json> documents;
  auto it = documents.find(attribute);
  if (it == documents.end()) {
    const auto text = fixture().attribute_string(attribute);
    REQUIRE_MESSAGE(text.has_value(), "optim fixture has no attribute ", attribute);
    it = documents.emplace(attribute, json::parse(*text, attribute)).first;
  }
  return json::Node(it->second, "optim fixture", "", attribute);
}

json::Node case_desc(const std::string& name) {
  static const json::Node cases = root_json("cases_json");
  for (const json::Node& c : cases.as_array())
    if (c.at("name").as_string() == name) return c;
  moegrad::fail("optim fixture", "no case '{}'", name);
}

// torch's param-group dict -> moegrad's hyperparameters (betas -> beta1, beta2).
optim::Hyperparameters hyperparameters(const json::Node& desc) {
  optim::Hyperparameters hp;
  hp.optimizer = desc.at("optimizer").as_string();
  for (const auto& [k, v] : desc.at("hyperparameters").members()) {
    if (k == "betas") {
      hp.values.emplace_back("beta1", v.at(0).as_double());
      hp.values.emplace_back("beta2", v.at(1).as_double());
    } else if (v.is_bool()) {
      hp.values.emplace_back(k, v.as_bool());
    } else {
      hp.values.emplace_back(k, v.as_double());
    }
  }
  return hp;
}

struct Run {
  json::Node desc;
  std::string name;
  std::vector<std::string> param_names;
  optim::NamedParameters params;
  std::unique_ptr<optim::Optimizer> opt;

  explicit Run(const std::string& case_name) : desc(case_desc(case_name)), name(case_name) {
    for (const json::Node& p : desc.at("params").as_array()) {
      param_names.push_back(p.as_string());
      params.emplace_back(p.as_string(), ag::Variable(core::clone(read("init/" + p.as_string())), true));
    }
    opt = optim::make_optimizer(params, hyperparameters(desc));
  }
  Tensor read(const std::string& rel) const { return fixture().read("/" + name + "/" + rel); }
  bool has_grad(const std::string& param, std::int64_t t) const {
    const auto skip = desc.at("no_grad").find(param);
    if (!skip) return true;
    for (const json::Node& s : skip->as_array())
      if (s.as_int() == t) return false;
    return true;
  }
  // Sets the gradients and lr of step t (0-based) and steps.
  void step(std::int64_t t) {
    const Tensor lrs = read("lr");
    for (const auto& [pname, var] : params) {
      if (has_grad(pname, t))
        var.set_grad(core::clone(core::select(read("grads/" + pname), 0, t)));
      else
        var.zero_grad();
    }
    opt->set_lr(core::select(lrs, 0, t).item<double>());
    opt->step();
  }
  bool f64() const { return desc.at("dtype").as_string() == "float64"; }
};

void check_against_torch(Run& run, std::int64_t t) {
  const double rtol = run.f64() ? 1e-12 : 1e-6;
  const double atol = run.f64() ? 1e-14 : 1e-7;
  const nn::StateDict sd = run.opt->state_dict();
  for (const auto& [pname, var] : run.params) {
    const std::string at = fmt::format("{} step {} ", run.name, t);
    check_close(at + pname, var.value(), core::select(run.read("params/" + pname), 0, t), rtol, atol);
    for (const json::Node& slot : run.desc.at("slots").as_array()) {
      const std::string key = pname + "/" + slot.as_string();
      // momentum_buffer and exp_avg have the gradients' scale (about 1) and may cancel to near 0,
      // where one rounding of a term of size 1 (torch uses FMA in places) is 6e-8: atol as for
      // the parameters. exp_avg_sq / max_exp_avg_sq are sums of positive terms of scale
      // (1 - beta2) g^2 = 1e-3: a relative tolerance, and an absolute one far below them.
      const bool squares = slot.as_string().find("sq") != std::string::npos;
      check_close(at + key, sd.at(key), core::select(run.read("state/" + key), 0, t), rtol,
                  squares ? atol * 1e-3 : atol);
    }
    CHECK_MESSAGE(sd.at(pname + "/step").item<std::int64_t>() ==
                      core::select(run.read("state/" + pname + "/step"), 0, t).item<std::int64_t>(),
                  at, pname, "/step");
    CHECK(run.opt->parameter_step(pname) == sd.at(pname + "/step").item<std::int64_t>());
  }
  CHECK(sd.at("step_count").item<std::int64_t>() == t + 1);
}

// A fresh directory per use (pid-qualified: ctest runs cases in parallel).
std::string temp_file(const std::string& name) {
  static int counter = 0;
  const auto dir = std::filesystem::temp_directory_path() / fmt::format("moegrad-optim-{}-{}", ::getpid(), counter++);
  std::filesystem::create_directories(dir);
  return (dir / name).string();
}

void run_case(const std::string& name) {
  // Uninterrupted: every step against torch.
  Run a(name);
  const std::int64_t steps = a.desc.at("steps").as_int();
  for (std::int64_t t = 0; t < steps; ++t) {
    a.step(t);
    check_against_torch(a, t);
  }
  CHECK(a.opt->step_count() == steps);

  // Interrupted after 2 steps: state and parameters go through an HDF5 checkpoint into a fresh
  // optimizer over fresh parameters, which continues bitwise equal to the uninterrupted run.
  Run b(name);
  b.step(0);
  b.step(1);
  const std::string path = temp_file("ckpt.h5");
  {
    h5::File f = h5::File::create(path);
    h5::write_state_dict(f, "/optimizer", b.opt->state_dict());
    nn::StateDict params;
    for (const auto& [pname, var] : b.params) params.insert(pname, var.value());
    h5::write_state_dict(f, "/model", params);
  }
  Run c(name);
  {
    const h5::File f = h5::File::open(path);
    const nn::StateDict params = h5::read_state_dict(f, "/model");
    for (const auto& [pname, var] : c.params) core::copy_(var.value(), params.at(pname));
    c.opt->load_state_dict(h5::read_state_dict(f, "/optimizer"));
  }
  std::filesystem::remove_all(std::filesystem::path(path).parent_path());
  CHECK(c.opt->step_count() == 2);
  for (std::int64_t t = 2; t < steps; ++t) c.step(t);
  const nn::StateDict sa = a.opt->state_dict(), sc = c.opt->state_dict();
  CHECK(sa.keys() == sc.keys());
  for (const auto& [key, value] : sa) {
    CHECK(value.dtype() == sc.at(key).dtype());
    check_equal(name + " resumed " + key, sc.at(key), value);
  }
  for (std::size_t i = 0; i < a.params.size(); ++i) {
    CHECK(a.params[i].second.dtype() == c.params[i].second.dtype());
    check_equal(name + " resumed " + a.params[i].first, c.params[i].second.value(), a.params[i].second.value());
  }
}

const std::vector<std::string> kCases = {
    "sgd_plain",      "sgd_momentum_dampening_wd", "sgd_nesterov",  "sgd_momentum_maximize", "adam_default",
    "adam_wd_amsgrad", "adam_f64_maximize",        "adamw_default", "adamw_amsgrad"};

}  // namespace

TEST_CASE("optim parity: the fixture's cases are exactly the tested ones") {
  std::set<std::string> in_file;
  const json::Node cases = root_json("cases_json");
  for (const json::Node& c : cases.as_array()) in_file.insert(c.at("name").as_string());
  const std::set<std::string> tested(kCases.begin(), kCases.end());
  CHECK_MESSAGE(in_file == tested, fmt::format("fixture: {}; tested: {}", fmt::join(in_file, ", "),
                                               fmt::join(tested, ", ")));
  CHECK(fixture().attribute_string("format") == "moegrad-optim-fixture");
}

TEST_CASE("optim parity: SGD plain, lr changed between steps") { run_case("sgd_plain"); }
TEST_CASE("optim parity: SGD momentum + dampening + weight decay, a parameter without grad at step 0") {
  run_case("sgd_momentum_dampening_wd");
}
TEST_CASE("optim parity: SGD nesterov + weight decay") { run_case("sgd_nesterov"); }
TEST_CASE("optim parity: SGD momentum, maximize") { run_case("sgd_momentum_maximize"); }
TEST_CASE("optim parity: Adam defaults") { run_case("adam_default"); }
TEST_CASE("optim parity: Adam weight decay + amsgrad") { run_case("adam_wd_amsgrad"); }
TEST_CASE("optim parity: Adam f64, betas, eps, weight decay, maximize") { run_case("adam_f64_maximize"); }
TEST_CASE("optim parity: AdamW defaults, a parameter skipped at step 2, lr changed") { run_case("adamw_default"); }
TEST_CASE("optim parity: AdamW amsgrad, betas, eps, weight decay") { run_case("adamw_amsgrad"); }

TEST_CASE("optim parity: clip_grad_norm and clip_grad_value against torch") {
  const json::Node clip = root_json("clip_json");
  const std::vector<std::string> names = {"experts.w1", "gate.weight", "bias"};
  auto fresh = [&] {
    optim::NamedParameters ps;
    for (const auto& n : names) {
      ag::Variable v(core::zeros_like(fixture().read("/clip/grads/" + n)), true);
      v.set_grad(core::clone(fixture().read("/clip/grads/" + n)));
      ps.emplace_back(n, v);
    }
    return ps;
  };
  for (const json::Node& c : clip.at("norm").as_array()) {
    const std::string cname = c.at("name").as_string();
    const json::Node nt = c.at("norm_type");
    const double norm_type = nt.is_string() ? INFINITY : nt.as_double();
    const optim::NamedParameters ps = fresh();
    const double total = optim::clip_grad_norm(ps, c.at("max_norm").as_double(), norm_type);
    const double want = fixture().read("/clip/" + cname + "/total_norm").item<double>();
    CHECK_MESSAGE(std::abs(total - want) <= 1e-6 * want, cname, ": total ", total, " vs torch ", want);
    for (const auto& [n, v] : ps) check_close(cname + " " + n, v.grad(), fixture().read("/clip/" + cname + "/" + n), 1e-6, 1e-7);
  }
  const optim::NamedParameters ps = fresh();
  optim::clip_grad_value(ps, clip.at("value").at("clip_value").as_double());
  for (const auto& [n, v] : ps) check_equal("clip value " + n, v.grad(), fixture().read("/clip/value/" + n));
}

TEST_CASE("optim parity: StepDecay and WarmupCosine against torch's StepLR and LambdaLR") {
  const json::Node s = root_json("schedules_json");
  auto check_schedule = [&](const std::string& name, const optim::Schedule& sched) {
    const std::vector<double> want = fixture().read("/schedules/" + name + "/lr").to_vector<double>();
    REQUIRE(!want.empty());
    for (std::size_t i = 0; i < want.size(); ++i) {
      const double got = sched.lr_at(static_cast<std::int64_t>(i));
      CHECK_MESSAGE(std::abs(got - want[i]) <= 1e-12 * std::abs(want[i]) + 1e-15, name, " step ", i, ": ", got,
                    " vs torch ", want[i]);
    }
  };
  const json::Node st = s.at("step_lr");
  check_schedule("step_lr", optim::StepDecay(st.at("base_lr").as_double(), st.at("step_size").as_int(),
                                             st.at("gamma").as_double()));
  for (const char* name : {"warmup_cosine", "warmup_cosine_min"}) {
    const json::Node w = s.at(name);
    check_schedule(name, optim::WarmupCosine(w.at("base_lr").as_double(), w.at("warmup_steps").as_int(),
                                             w.at("total_steps").as_int(), w.at("min_lr").as_double()));
  }
}
