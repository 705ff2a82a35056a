// Module: registration, names, modes, state_dict / load_state_dict and the state hooks.
#include <doctest/doctest.h>

#include <memory>
#include <string>

#include "layers/layers.h"

namespace ag = moegrad::ag;
namespace core = moegrad::core;
namespace nn = moegrad::nn;
using ag::Variable;
using core::Shape;
using core::Tensor;
using doctest::Contains;
using moegrad::Error;

namespace {

std::vector<std::string> names_of(const std::vector<std::pair<std::string, Variable>>& v) {
  std::vector<std::string> out;
  for (const auto& p : v) out.push_back(p.first);
  return out;
}

// A leaf module with a parameter, a persistent and a non-persistent buffer.
struct Leafy : nn::Module {
  Leafy() {
    register_parameter("w", core::zeros({2, 3}));
    register_buffer("running", core::zeros({3}));
    register_buffer("scratch", core::zeros({1}), /*persistent=*/false);
  }
  std::string name() const override { return "Leafy"; }
};

// Own parameter first, then two children (one a Sequential).
struct Tree : nn::Module {
  Tree() {
    register_parameter("scale", core::ones({1}));
    a = register_module("a", std::make_shared<Leafy>());
    seq = register_module("seq", std::make_shared<nn::Sequential>(std::initializer_list<std::shared_ptr<nn::UnaryModule>>{
                                     std::make_shared<nn::Linear>(3, 2), std::make_shared<nn::ReLU>(),
                                     std::make_shared<nn::Linear>(2, 1, false)}));
  }
  std::string name() const override { return "Tree"; }
  std::shared_ptr<Leafy> a;
  std::shared_ptr<nn::Sequential> seq;
};

// Parameters with hand-picked names and shapes for the load-error tests.
struct Plain : nn::Module {
  Plain() {
    register_parameter("a", core::zeros({1}));
    register_parameter("b", core::zeros({1}));
    register_parameter("d", core::zeros({3, 2}));
  }
  std::string name() const override { return "Plain"; }
};

// Test-only module for the state hooks: E expert weights stored stacked as one parameter
// "weight" [E, out, in], exposed in the state dict as per-expert keys "experts.<i>.weight"
// (as a ModuleList of bias-free Linears would name them), each a view (select) of the stack.
struct StackedExperts : nn::Module {
  StackedExperts(std::int64_t e, std::int64_t in, std::int64_t out, std::uint64_t seed) : e_(e) {
    core::Generator gen(seed);
    register_parameter("weight", core::uniform({e, out, in}, -1, 1, {}, &gen));
    register_buffer("counts", core::zeros({e}));  // default handling: key "counts"
  }
  std::string name() const override { return "StackedExperts"; }
  std::string key(const std::string& prefix, std::int64_t i) const {
    return prefix + "experts." + std::to_string(i) + ".weight";
  }
  void collect_entries(const std::string& prefix, std::vector<nn::StateEntry>& out) const override {
    for (std::int64_t i = 0; i < e_; ++i) out.push_back({key(prefix, i), prefix + "weight", parameter("weight"), Tensor(), {i}});
    out.push_back({prefix + "counts", prefix + "counts", ag::Variable(), buffer("counts"), {}});
  }
  std::int64_t e_;
};

struct Holder : nn::Module {
  explicit Holder(std::uint64_t seed) {
    register_module("norm", std::make_shared<nn::RMSNorm>(3));
    moe = register_module("moe", std::make_shared<StackedExperts>(3, 2, 4, seed));
  }
  std::string name() const override { return "Holder"; }
  std::shared_ptr<StackedExperts> moe;
};

std::vector<float> values(const Tensor& t) { return t.to_vector<float>(); }

}  // namespace

TEST_CASE("layers: module registration order and dotted names") {
  Tree t;
  CHECK(names_of(t.named_parameters()) ==
        std::vector<std::string>{"scale", "a.w", "seq.0.weight", "seq.0.bias", "seq.2.weight"});
  CHECK(names_of(t.named_parameters(false)) == std::vector<std::string>{"scale"});
  CHECK(t.parameters().size() == 5);
  CHECK(t.num_parameters() == 1 + 6 + 6 + 2 + 2);
  for (const auto& p : t.parameters()) {
    CHECK(p.requires_grad());
    CHECK(p.is_leaf());
  }
  const auto bufs = t.named_buffers();
  REQUIRE(bufs.size() == 2);
  CHECK(bufs[0].first == "a.running");
  CHECK(bufs[1].first == "a.scratch");
  const auto kids = t.named_children();
  REQUIRE(kids.size() == 2);
  CHECK(kids[0].first == "a");
  CHECK(kids[1].first == "seq");
  std::vector<std::string> mods;
  for (const auto& [n, m] : t.named_modules()) mods.push_back(n);
  CHECK(mods == std::vector<std::string>{"a", "seq", "seq.0", "seq.1", "seq.2"});
  // Dotted lookup.
  CHECK(t.parameter("seq.0.weight").shape() == Shape{2, 3});
  CHECK(t.buffer("a.running").shape() == Shape{3});
  CHECK(t.child("seq.1")->name() == "ReLU");
  CHECK(t.has_parameter("seq.2.weight"));
  CHECK_FALSE(t.has_parameter("seq.2.bias"));
  CHECK_FALSE(t.has_parameter("nope.w"));
  CHECK_THROWS_WITH_AS(t.parameter("seq.2.bias"), Contains("[Linear] no parameter 'seq.2.bias'"), Error);
  CHECK_THROWS_WITH_AS(t.parameter("x.w"), Contains("[Tree] no child module 'x'"), Error);
  // apply visits children first, then the module itself.
  std::vector<std::string> order;
  t.apply([&](nn::Module& m) { order.push_back(m.name()); });
  CHECK(order == std::vector<std::string>{"Leafy", "Linear", "ReLU", "Linear", "Sequential", "Tree"});
}

TEST_CASE("layers: module registration errors") {
  Leafy m;
  CHECK_THROWS_WITH_AS(m.register_parameter("w", core::zeros({1})), Contains("[Leafy] cannot register parameter 'w'"),
                       Error);
  CHECK_THROWS_WITH_AS(m.register_buffer("running", core::zeros({1})), Contains("name is already taken"), Error);
  CHECK_THROWS_WITH_AS(m.register_module("w", std::make_shared<nn::ReLU>()), Contains("cannot register module 'w'"),
                       Error);
  CHECK_THROWS_WITH_AS(m.register_parameter("a.b", core::zeros({1})), Contains("contain no '.'"), Error);
  CHECK_THROWS_WITH_AS(m.register_parameter("", core::zeros({1})), Contains("non-empty"), Error);
  Variable x(core::ones({2}), true);
  CHECK_THROWS_WITH_AS(m.register_parameter("y", ag::mul(x, 2.0)), Contains("must be a leaf"), Error);
  CHECK_THROWS_WITH_AS(m.register_parameter("i", core::arange(3)), Contains("only f32/f64"), Error);
  std::shared_ptr<nn::Module> none;
  CHECK_THROWS_WITH_AS(m.register_module("c", none), Contains("is null"), Error);
}

TEST_CASE("layers: train/eval recurse, zero_grad drops gradients") {
  Tree t;
  CHECK(t.is_training());
  t.eval();
  CHECK_FALSE(t.is_training());
  CHECK_FALSE(t.a->is_training());
  for (const auto& [n, m] : t.named_modules()) CHECK_FALSE(m->is_training());
  t.train();
  for (const auto& [n, m] : t.named_modules()) CHECK(m->is_training());
  t.seq->eval();  // a subtree only
  CHECK(t.is_training());
  CHECK_FALSE((*t.seq)[0]->is_training());

  Variable y = ag::sum(t.seq->forward(Variable(core::ones({4, 3}))));
  y.backward();
  CHECK(t.parameter("seq.0.weight").grad().defined());
  t.zero_grad();
  for (const auto& p : t.parameters()) CHECK_FALSE(p.grad().defined());
}

TEST_CASE("layers: state_dict holds parameters and persistent buffers, aliasing the module") {
  Tree t;
  const nn::StateDict sd = t.state_dict();
  CHECK(sd.keys() == std::vector<std::string>{"scale", "a.w", "a.running", "seq.0.weight", "seq.0.bias", "seq.2.weight"});
  CHECK(sd.at("a.w").shape() == Shape{2, 3});
  CHECK_FALSE(sd.contains("a.scratch"));
  CHECK(sd.find("nope") == nullptr);
  CHECK_THROWS_WITH_AS(sd.at("nope"), Contains("[StateDict] no key 'nope'"), Error);
  // Values share storage with the parameters; clone() snapshots.
  const nn::StateDict snap = nn::clone(sd);
  core::fill_(t.parameter("a.w").value(), 7.0);
  CHECK(values(sd.at("a.w")) == std::vector<float>(6, 7.f));
  CHECK(values(snap.at("a.w")) == std::vector<float>(6, 0.f));
  nn::StateDict dup;
  dup.insert("k", core::zeros({1}));
  CHECK_THROWS_WITH_AS(dup.insert("k", core::zeros({1})), Contains("[StateDict] duplicate key 'k'"), Error);
}

TEST_CASE("layers: state_dict round trip through load_state_dict") {
  core::Generator g1(1), g2(2);
  nn::st::Expert a(6, 4.0, true, true, {}, &g1), b(6, 4.0, true, true, {}, &g2);
  const Variable x(core::randn({3, 6}, {}, &g1));
  CHECK(values(a.forward(x).value()) != values(b.forward(x).value()));
  // Distinct buffers for the tree test.
  const nn::LoadReport report = b.load_state_dict(nn::clone(a.state_dict()));
  CHECK(report.missing_keys.empty());
  CHECK(report.unexpected_keys.empty());
  CHECK(values(a.forward(x).value()) == values(b.forward(x).value()));
  for (const auto& [key, value] : b.state_dict()) CHECK(values(value) == values(a.state_dict().at(key)));
  // Parameters stay the same leaves (copied in place).
  const Variable before = b.parameter("net.1.weight");
  b.load_state_dict(a.state_dict());
  CHECK(b.parameter("net.1.weight").impl() == before.impl());

  // Buffers too.
  Tree t1, t2;
  core::fill_(t1.buffer("a.running"), 3.0);
  t2.load_state_dict(t1.state_dict());
  CHECK(values(t2.buffer("a.running")) == std::vector<float>(3, 3.f));
}

TEST_CASE("layers: strict load reports every missing, unexpected and mismatched key at once") {
  Plain m;
  nn::StateDict sd;
  sd.insert("c", core::zeros({1}));
  sd.insert("d", core::ones({2, 3}));
  CHECK_THROWS_WITH_AS(
      m.load_state_dict(sd), "[load_state_dict] missing keys: a, b; unexpected keys: c; shape mismatch: d (checkpoint (2, 3) vs model (3, 2))",
      Error);
  // Nothing was copied: a load either succeeds completely or changes nothing.
  nn::StateDict good;
  good.insert("a", core::ones({1}));
  good.insert("b", core::ones({1}));
  good.insert("d", core::ones({2, 3}));
  CHECK_THROWS_WITH_AS(m.load_state_dict(good), Contains("shape mismatch: d"), Error);
  CHECK(values(m.parameter("a").value()) == std::vector<float>{0.f});
  // dtype is checked too.
  nn::StateDict f64;
  f64.insert("a", core::ones({1}, {core::DType::f64}));
  f64.insert("b", core::ones({1}));
  f64.insert("d", core::ones({3, 2}));
  CHECK_THROWS_WITH_AS(m.load_state_dict(f64), "[load_state_dict] dtype mismatch: a (checkpoint f64 vs model f32)", Error);
}

TEST_CASE("layers: non-strict load tolerates missing and unexpected keys but not mismatches") {
  Plain m;
  nn::StateDict sd;
  sd.insert("a", core::full({1}, 2.0));
  sd.insert("extra", core::zeros({4}));
  const nn::LoadReport r = m.load_state_dict(sd, /*strict=*/false);
  CHECK(r.missing_keys == std::vector<std::string>{"b", "d"});
  CHECK(r.unexpected_keys == std::vector<std::string>{"extra"});
  CHECK(values(m.parameter("a").value()) == std::vector<float>{2.f});
  sd.insert("d", core::zeros({6}));
  CHECK_THROWS_WITH_AS(m.load_state_dict(sd, false), "[load_state_dict] shape mismatch: d (checkpoint (6,) vs model (3, 2))",
                       Error);
}

TEST_CASE("layers: state hooks expose stacked weights as per-expert keys (views)") {
  Holder h(7);
  // Internal storage: one stacked parameter.
  CHECK(names_of(h.named_parameters()) == std::vector<std::string>{"norm.gamma", "moe.weight"});
  CHECK(h.parameter("moe.weight").shape() == Shape{3, 4, 2});
  // Exposed state: per-expert keys with PyTorch's Linear shapes.
  const nn::StateDict sd = h.state_dict();
  CHECK(sd.keys() == std::vector<std::string>{"norm.gamma", "moe.experts.0.weight", "moe.experts.1.weight",
                                              "moe.experts.2.weight", "moe.counts"});
  CHECK(sd.at("moe.experts.1.weight").shape() == Shape{4, 2});
  // They are views of the stack: same storage, and they follow in-place changes.
  const Tensor& stack = h.parameter("moe.weight").value();
  CHECK(sd.at("moe.experts.2.weight").storage() == stack.storage());
  CHECK(values(sd.at("moe.experts.1.weight")) == values(core::select(stack, 0, 1)));
  // Loading writes each per-expert key into its slice of the stack.
  Holder other(8);
  CHECK(values(other.parameter("moe.weight").value()) != values(stack));
  other.load_state_dict(sd);
  CHECK(values(other.parameter("moe.weight").value()) == values(stack));
  nn::StateDict by_hand;
  by_hand.insert("norm.gamma", core::ones({3}));
  for (int i = 0; i < 3; ++i) by_hand.insert("moe.experts." + std::to_string(i) + ".weight", core::full({4, 2}, i + 1.0));
  by_hand.insert("moe.counts", core::zeros({3}));
  other.load_state_dict(by_hand);
  const auto w = values(other.parameter("moe.weight").value());
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 8; ++j) CHECK(w[static_cast<std::size_t>(i * 8 + j)] == static_cast<float>(i + 1));
  // Errors use the exposed names.
  nn::StateDict broken = nn::clone(sd);
  nn::StateDict partial;
  for (const auto& [k, v] : broken)
    if (k != "moe.experts.1.weight") partial.insert(k, k == "moe.experts.2.weight" ? core::zeros({2, 4}) : v);
  partial.insert("moe.weight", core::zeros({3, 4, 2}));  // the internal name is not a key
  CHECK_THROWS_WITH_AS(other.load_state_dict(partial),
                       "[load_state_dict] missing keys: moe.experts.1.weight; unexpected keys: moe.weight; "
                       "shape mismatch: moe.experts.2.weight (checkpoint (2, 4) vs model (4, 2))",
                       Error);
}

TEST_CASE("layers: set_parameter rebinds a parameter; shared parameters are listed once") {
  nn::Linear a(3, 2), b(3, 2);
  const Variable shared = a.weight();
  b.set_parameter("weight", shared);
  CHECK(b.weight().impl() == a.weight().impl());
  CHECK_THROWS_WITH_AS(b.set_parameter("weight", Variable(core::zeros({3, 2}))),
                       Contains("[Linear] parameter 'weight' is f32(2, 3) on cpu, cannot set it to f32(3, 2) on cpu"),
                       Error);
  CHECK_THROWS_WITH_AS(b.set_parameter("nope", shared), Contains("[Linear] no parameter 'nope'"), Error);
  // A tied pair: one parameter list entry, two state keys.
  nn::Sequential tied{std::make_shared<nn::Linear>(3, 3), std::make_shared<nn::Linear>(3, 3)};
  tied.set_parameter("1.weight", tied.parameter("0.weight"));
  CHECK(names_of(tied.named_parameters()) == std::vector<std::string>{"0.weight", "0.bias", "1.bias"});
  CHECK(tied.state_dict().keys() == std::vector<std::string>{"0.weight", "0.bias", "1.weight", "1.bias"});
  // set_buffer
  Leafy l;
  l.set_buffer("running", core::ones({3}));
  CHECK(values(l.state_dict().at("running")) == std::vector<float>(3, 1.f));
  CHECK_THROWS_WITH_AS(l.set_buffer("running", core::ones({4})), Contains("[Leafy] buffer 'running' is f32(3,), cannot set it to f32(4,)"), Error);
}

TEST_CASE("layers: to_string prints the module tree with parameter shapes") {
  nn::st::Expert e(6);
  CHECK(e.to_string() ==
        "Expert(\n"
        "  (net): Sequential(\n"
        "    (0): Linear(in_features=6, out_features=32, bias=True) [weight f32(32, 6), bias f32(32,)]\n"
        "    (1): GEGLU(dim=16, mult_bias=True) [mult_bias f32(16,)]\n"
        "    (2): Linear(in_features=16, out_features=6, bias=True) [weight f32(6, 16), bias f32(6,)]\n"
        "  )\n"
        ")");
  Tree t;
  CHECK(t.to_string() ==
        "Tree(\n"
        "  scale f32(1,)\n"
        "  (a): Leafy() [w f32(2, 3), running f32(3,) (buffer), scratch f32(1,) (buffer, not persistent)]\n"
        "  (seq): Sequential(\n"
        "    (0): Linear(in_features=3, out_features=2, bias=True) [weight f32(2, 3), bias f32(2,)]\n"
        "    (1): ReLU()\n"
        "    (2): Linear(in_features=2, out_features=1, bias=False) [weight f32(1, 2)]\n"
        "  )\n"
        ")");
  nn::lmoe::Experts lm(4, std::vector<std::int64_t>{2, 3}, 8);
  CHECK(lm.to_string() ==
        "Experts(\n"
        "  dim=4, num_experts=(2, 3), hidden_dim=8\n"
        "  w1 f32(2, 3, 4, 8)\n"
        "  w2 f32(2, 3, 8, 4)\n"
        "  (act): GELU(approximate='none')\n"
        ")");
}
