// optim: hyperparameter and parameter validation, skipping parameters without gradient, state
// keys by parameter name, load_state_dict errors, clipping and schedules by hand.
#include <doctest/doctest.h>

#include <cmath>
#include <limits>
#include <memory>
#include <string>
#include <vector>

#include "core/ops.h"
#include "layers/linear.h"
#include "layers/sequential.h"
#include "optim/optim.h"

namespace core = moegrad::core;
namespace nn = moegrad::nn;
namespace optim = moegrad::optim;
namespace ag = moegrad::ag;
using core::DType;
using core::Shape;
using core::Tensor;
using doctest::Contains;
using moegrad::Error;

namespace {

ag::Variable param(std::vector<double> values, Shape shape, DType dtype = DType::f32) {
  return ag::Variable(core::to_dtype(core::from_vector<double>(values, shape), dtype), true);
}

optim::NamedParameters two_params() {
  return {{"layer.w", param({1, 2, 3, 4, 5, 6}, {2, 3})}, {"layer.b", param({0.5, -0.5}, {2})}};
}

void set_grads(const optim::NamedParameters& ps, double value) {
  for (const auto& [n, v] : ps) v.set_grad(core::full_like(v.value(), value));
}

std::shared_ptr<nn::Sequential> small_model() {
  core::Generator gen(7);
  return std::make_shared<nn::Sequential>(std::initializer_list<std::shared_ptr<nn::UnaryModule>>{
      std::make_shared<nn::Linear>(3, 4, true, core::TensorOptions{}, &gen),
      std::make_shared<nn::Linear>(4, 2, false, core::TensorOptions{}, &gen)});
}

}  // namespace

TEST_CASE("optim: hyperparameter errors like PyTorch's") {
  const auto ps = two_params();
  CHECK_THROWS_WITH_AS(optim::SGD(ps, 0.1, -0.1), Contains("[SGD] invalid momentum -0.1"), Error);
  CHECK_THROWS_WITH_AS(optim::SGD(ps, -1.0), Contains("[SGD] invalid learning rate -1"), Error);
  CHECK_THROWS_WITH_AS(optim::SGD(ps, 0.1, 0.9, 0, -0.01), Contains("[SGD] invalid weight_decay -0.01"), Error);
  CHECK_THROWS_WITH_AS(optim::SGD(ps, optim::SGDOptions{}), Contains("[SGD] the learning rate is required"), Error);
  CHECK_THROWS_WITH_AS(optim::SGD(ps, 0.1, 0, 0, 0, true),
                       Contains("[SGD] nesterov momentum requires momentum > 0 and dampening 0"), Error);
  CHECK_THROWS_WITH_AS(optim::SGD(ps, 0.1, 0.9, 0.1, 0, true), Contains("[SGD] nesterov momentum requires"), Error);
  CHECK_NOTHROW(optim::SGD(ps, 0.1, 0.9, 0, 0, true));
  CHECK_NOTHROW(optim::SGD(ps, 0.0));  // lr 0 is allowed, as in PyTorch

  CHECK_THROWS_WITH_AS(optim::Adam(ps, -1e-3), Contains("[Adam] invalid learning rate -0.001"), Error);
  CHECK_THROWS_WITH_AS(optim::Adam(ps, 1e-3, {1.0, 0.999}), Contains("[Adam] invalid beta1 1: must be in [0, 1)"),
                       Error);
  CHECK_THROWS_WITH_AS(optim::Adam(ps, 1e-3, {0.9, -0.1}), Contains("[Adam] invalid beta2 -0.1"), Error);
  CHECK_THROWS_WITH_AS(optim::Adam(ps, 1e-3, {0.9, 0.999}, -1e-8), Contains("[Adam] invalid eps -1e-08"), Error);
  CHECK_THROWS_WITH_AS(optim::Adam(ps, 1e-3, {0.9, 0.999}, 1e-8, -1.0), Contains("[Adam] invalid weight_decay -1"),
                       Error);
  CHECK_THROWS_WITH_AS(optim::AdamW(ps, {.betas = {0.9, 1.0}}), Contains("[AdamW] invalid beta2 1"), Error);
  CHECK_THROWS_WITH_AS(optim::AdamW(ps, {.weight_decay = -0.1}), Contains("[AdamW] invalid weight_decay -0.1"), Error);
  CHECK_THROWS_WITH_AS(optim::AdamW(ps, {.lr = std::nan("")}), Contains("[AdamW] the learning rate is required"),
                       Error);

  optim::Adam adam(ps);
  CHECK_THROWS_WITH_AS(adam.set_lr(-0.5), Contains("[Adam] invalid learning rate -0.5"), Error);
  adam.set_lr(0.25);
  CHECK(adam.lr() == 0.25);
  CHECK(adam.options().lr == 0.25);
}

TEST_CASE("optim: defaults match PyTorch's") {
  const auto ps = two_params();
  const optim::Adam adam(ps);
  CHECK(adam.lr() == 1e-3);
  CHECK(adam.options().betas == std::make_pair(0.9, 0.999));
  CHECK(adam.options().eps == 1e-8);
  CHECK(adam.options().weight_decay == 0);
  CHECK(!adam.options().amsgrad);
  const optim::AdamW adamw(ps);
  CHECK(adamw.options().weight_decay == 1e-2);
  CHECK(adamw.options().eps == 1e-8);
  const optim::SGD sgd(ps, 0.1);
  CHECK(sgd.options().momentum == 0);
  CHECK(sgd.options().dampening == 0);
  CHECK(!sgd.options().nesterov);
}

TEST_CASE("optim: parameter list errors") {
  CHECK_THROWS_WITH_AS(optim::SGD({}, 0.1), Contains("[SGD] got an empty parameter list"), Error);
  const auto w = param({1, 2}, {2});
  CHECK_THROWS_WITH_AS(optim::Adam({{"w", w}, {"w", param({1}, {1})}}), Contains("duplicate parameter name 'w'"),
                       Error);
  CHECK_THROWS_WITH_AS(optim::Adam({{"a", w}, {"b", w}}), Contains("[Adam] parameter 'b' is the same variable as 'a'"),
                       Error);
  CHECK_THROWS_WITH_AS(optim::Adam({{"a/b", w}}), Contains("invalid parameter name 'a/b'"), Error);
  CHECK_THROWS_WITH_AS(optim::Adam({{"step_count", w}}), Contains("invalid parameter name 'step_count'"), Error);
  const ag::Variable y = ag::mul(w, 2.0);
  CHECK_THROWS_WITH_AS(optim::Adam({{"y", y}}), Contains("non-leaf"), Error);
  const ag::Variable t(core::transpose(core::zeros({2, 3}), 0, 1), true);
  CHECK_THROWS_WITH_AS(optim::Adam({{"t", t}}), Contains("[Adam] parameter 't' (f32(3, 2)) is not contiguous"), Error);
  const ag::Variable i(core::zeros({2}, {DType::i64}), false);
  CHECK_THROWS_WITH_AS(optim::SGD({{"i", i}}, 0.1), Contains("only f32/f64"), Error);
}

TEST_CASE("optim: a parameter without a gradient is skipped; updates are in place and unrecorded") {
  for (const std::string kind : {"SGD", "Adam", "AdamW"}) {
    CAPTURE(kind);
    const auto ps = two_params();
    std::unique_ptr<optim::Optimizer> opt;
    if (kind == "SGD") opt = std::make_unique<optim::SGD>(ps, 0.1, 0.9);
    if (kind == "Adam") opt = std::make_unique<optim::Adam>(ps, 0.1);
    if (kind == "AdamW") opt = std::make_unique<optim::AdamW>(ps, 0.1);
    const Tensor b_before = core::clone(ps[1].second.value());
    const Tensor w_before = core::clone(ps[0].second.value());
    const auto* w_storage = ps[0].second.value().storage().get();
    ps[0].second.set_grad(core::ones({2, 3}));
    opt->step();
    CHECK(opt->step_count() == 1);
    CHECK(opt->parameter_step("layer.w") == 1);
    CHECK(opt->parameter_step("layer.b") == 0);
    CHECK(ps[1].second.value().to_vector<float>() == b_before.to_vector<float>());
    CHECK(ps[0].second.value().to_vector<float>() != w_before.to_vector<float>());
    CHECK(ps[0].second.value().storage().get() == w_storage);  // in place
    CHECK(ps[0].second.is_leaf());
    CHECK(ps[0].second.requires_grad());
    for (const auto& slot : opt->slot_names())
      CHECK(core::sum(core::abs(opt->state_dict().at("layer.b/" + slot))).item<double>() == 0);

    opt->zero_grad();
    CHECK(!ps[0].second.grad().defined());
    opt->step();  // nothing has a gradient: nothing changes but the count
    CHECK(opt->step_count() == 2);
    CHECK(opt->parameter_step("layer.w") == 1);
    CHECK_THROWS_WITH_AS(opt->parameter_step("nope"), Contains("no parameter 'nope'"), Error);
  }
}

TEST_CASE("optim: a bad gradient throws before any parameter changes") {
  const auto ps = two_params();
  optim::SGD opt(ps, 0.1);
  ps[0].second.set_grad(core::ones({2, 3}));
  ps[1].second.set_grad(core::ones({2}, {DType::f64}));
  const Tensor w_before = core::clone(ps[0].second.value());
  CHECK_THROWS_WITH_AS(opt.step(), Contains("[SGD] gradient f64(2,) of parameter 'layer.b' does not match the parameter f32(2,)"), Error);
  CHECK(ps[0].second.value().to_vector<float>() == w_before.to_vector<float>());
  CHECK(opt.step_count() == 0);
  CHECK(opt.parameter_step("layer.w") == 0);
}

TEST_CASE("optim: SGD by hand: first momentum buffer is the gradient, nesterov, weight decay") {
  // p = 1, g = 2, lr 0.1, momentum 0.5, dampening 0.5, weight_decay 0.1 (d = g + 0.1 p)
  auto p = param({1.0}, {1}, DType::f64);
  optim::SGD opt({{"p", p}}, 0.1, 0.5, 0.5, 0.1);
  p.set_grad(core::full({1}, 2.0, {DType::f64}));
  opt.step();  // d = 2.1, buf = 2.1, p = 1 - 0.21
  CHECK(p.item<double>() == doctest::Approx(0.79).epsilon(1e-15));
  CHECK(opt.state_dict().at("p/momentum_buffer").item<double>() == doctest::Approx(2.1).epsilon(1e-15));
  opt.step();  // d = 2 + 0.079 = 2.079, buf = 0.5 * 2.1 + 0.5 * 2.079 = 2.0895, p = 0.79 - 0.20895
  CHECK(opt.state_dict().at("p/momentum_buffer").item<double>() == doctest::Approx(2.0895).epsilon(1e-14));
  CHECK(p.item<double>() == doctest::Approx(0.58105).epsilon(1e-14));

  auto q = param({1.0}, {1}, DType::f64);
  optim::SGD nesterov({{"q", q}}, 0.1, 0.9, 0, 0, true);
  q.set_grad(core::full({1}, 1.0, {DType::f64}));
  nesterov.step();  // buf = 1, d = 1 + 0.9 * 1 = 1.9
  CHECK(q.item<double>() == doctest::Approx(1 - 0.19).epsilon(1e-15));
}

TEST_CASE("optim: Adam's first step moves each element by about lr; AdamW decays first") {
  auto p = param({1.0, -2.0, 3.0}, {3}, DType::f64);
  optim::Adam adam({{"p", p}}, 0.01);
  p.set_grad(core::from_vector<double>({0.5, -4.0, 1e-3}, {3}));
  adam.step();  // m_hat = g, v_hat = g^2: p -= lr * g / (|g| + eps)
  const auto v = p.value().to_vector<double>();
  CHECK(v[0] == doctest::Approx(1.0 - 0.01 * 0.5 / (0.5 + 1e-8)).epsilon(1e-13));
  CHECK(v[1] == doctest::Approx(-2.0 + 0.01 * 4.0 / (4.0 + 1e-8)).epsilon(1e-13));
  CHECK(v[2] == doctest::Approx(3.0 - 0.01 * 1e-3 / (1e-3 + 1e-8)).epsilon(1e-13));

  auto q = param({2.0}, {1}, DType::f64);
  optim::AdamW adamw({{"q", q}}, 0.1, {0.9, 0.999}, 1e-8, 0.5);
  q.set_grad(core::full({1}, 0.0, {DType::f64}));
  adamw.step();  // zero gradient: only the decoupled decay, 2 * (1 - 0.05)
  CHECK(q.item<double>() == doctest::Approx(1.9).epsilon(1e-15));
}

TEST_CASE("optim: a large parameter (OpenMP path) matches the formula") {
  const std::int64_t n = 100003;
  const Tensor g = core::div(core::sub(core::arange(0, n, 1, {DType::f64}), double(n / 2)), double(n));
  auto p = ag::Variable(core::ones({n}, {DType::f64}), true);
  optim::Adam adam({{"p", p}}, 0.01, {0.9, 0.99}, 1e-8, 0.1);
  for (int t = 1; t <= 2; ++t) {
    p.set_grad(core::clone(g));
    adam.step();
  }
  // replay the two steps with core ops
  Tensor q = core::ones({n}, {DType::f64}), m = core::zeros({n}, {DType::f64}), v = core::zeros({n}, {DType::f64});
  for (int t = 1; t <= 2; ++t) {
    const Tensor gt = core::add(g, core::mul(q, 0.1));
    m = core::add(core::mul(m, 0.9), core::mul(gt, 0.1));
    v = core::add(core::mul(v, 0.99), core::mul(core::square(gt), 1 - 0.99));
    const Tensor denom = core::add(core::div(core::sqrt(v), std::sqrt(1 - std::pow(0.99, t))), 1e-8);
    q = core::sub(q, core::div(core::mul(m, 0.01 / (1 - std::pow(0.9, t))), denom));
  }
  const double err = core::amax(core::abs(core::sub(p.value(), q))).item<double>();
  CHECK(err < 1e-13);
}

TEST_CASE("optim: state_dict keys by parameter name") {
  const auto model = small_model();
  const auto named = model->named_parameters();
  REQUIRE(named.size() == 3);

  optim::Adam adam(named, {.amsgrad = true});
  CHECK(adam.slot_names() == std::vector<std::string>{"exp_avg", "exp_avg_sq", "max_exp_avg_sq"});
  const nn::StateDict sd = adam.state_dict();
  CHECK(sd.keys() == std::vector<std::string>{"0.weight/step", "0.weight/exp_avg", "0.weight/exp_avg_sq",
                                              "0.weight/max_exp_avg_sq", "0.bias/step", "0.bias/exp_avg",
                                              "0.bias/exp_avg_sq", "0.bias/max_exp_avg_sq", "1.weight/step",
                                              "1.weight/exp_avg", "1.weight/exp_avg_sq", "1.weight/max_exp_avg_sq",
                                              "step_count"});
  CHECK(sd.at("0.weight/exp_avg").shape() == Shape{4, 3});
  CHECK(sd.at("0.weight/step").dim() == 0);
  CHECK(sd.at("0.weight/step").dtype() == DType::i64);

  CHECK(optim::SGD(named, 0.1).state_dict().keys() ==
        std::vector<std::string>{"0.weight/step", "0.bias/step", "1.weight/step", "step_count"});
  CHECK(optim::SGD(named, 0.1, 0.9).state_dict().keys() ==
        std::vector<std::string>{"0.weight/step", "0.weight/momentum_buffer", "0.bias/step", "0.bias/momentum_buffer",
                                 "1.weight/step", "1.weight/momentum_buffer", "step_count"});
  CHECK(optim::AdamW(named).slot_names() == std::vector<std::string>{"exp_avg", "exp_avg_sq"});
}

TEST_CASE("optim: training a small model through the public API lowers the loss") {
  const auto model = small_model();
  optim::AdamW opt(model->named_parameters(), {.lr = 0.05});
  const ag::Variable x(core::from_vector<float>({1, 2, 3, -1, 0, 1}, {2, 3}));
  auto loss_of = [&] { return ag::mean(ag::square(model->forward(x))); };
  const double first = loss_of().item<double>();
  for (int i = 0; i < 20; ++i) {
    opt.zero_grad();
    loss_of().backward();
    optim::clip_grad_norm(opt.named_parameters(), 1.0);
    opt.step();
  }
  CHECK(loss_of().item<double>() < 0.5 * first);
  CHECK(opt.step_count() == 20);
}

TEST_CASE("optim: load_state_dict names missing, unexpected and mis-shaped keys") {
  const auto ps = two_params();
  optim::Adam adam(ps);
  set_grads(ps, 1.0);
  adam.step();
  const nn::StateDict good = nn::clone(adam.state_dict());

  SUBCASE("missing and unexpected") {
    nn::StateDict bad;
    for (const auto& [k, v] : good)
      if (k != "layer.w/exp_avg_sq") bad.insert(k, v);
    bad.insert("layer.x/exp_avg", core::zeros({2}));
    CHECK_THROWS_WITH_AS(adam.load_state_dict(bad),
                         Contains("[Adam] optimizer state: missing keys: layer.w/exp_avg_sq; unexpected keys: "
                                  "layer.x/exp_avg"),
                         Error);
  }
  SUBCASE("shape, dtype and step") {
    nn::StateDict bad;
    for (const auto& [k, v] : good) {
      if (k == "layer.w/exp_avg")
        bad.insert(k, core::zeros({3, 2}));
      else if (k == "layer.b/exp_avg")
        bad.insert(k, core::zeros({2}, {DType::f64}));
      else if (k == "layer.b/step")
        bad.insert(k, core::scalar_tensor(-1, {DType::i64}));
      else if (k == "layer.w/step")
        bad.insert(k, core::scalar_tensor(1.5, {DType::f32}));
      else
        bad.insert(k, v);
    }
    CHECK_THROWS_WITH_AS(adam.load_state_dict(bad),
                         Contains("shape mismatch: layer.w/exp_avg (checkpoint (3, 2) vs parameter (2, 3)); dtype "
                                  "mismatch: layer.b/exp_avg (checkpoint f64 vs parameter f32); invalid step: "
                                  "layer.w/step (f32()), layer.b/step (i64())"),
                         Error);
  }
  SUBCASE("another optimizer's state") {
    optim::SGD sgd(ps, 0.1, 0.9);
    CHECK_THROWS_WITH_AS(sgd.load_state_dict(good),
                         Contains("[SGD] optimizer state: missing keys: layer.w/momentum_buffer, "
                                  "layer.b/momentum_buffer; unexpected keys: layer.w/exp_avg"),
                         Error);
    optim::Adam ams(ps, {.amsgrad = true});
    CHECK_THROWS_WITH_AS(ams.load_state_dict(good), Contains("missing keys: layer.w/max_exp_avg_sq"), Error);
  }
  SUBCASE("another parameter set") {
    optim::Adam other({{"layer.w", param({1, 2, 3, 4, 5, 6}, {2, 3})}});
    CHECK_THROWS_WITH_AS(other.load_state_dict(good), Contains("unexpected keys: layer.b/step, layer.b/exp_avg"), Error);
  }
  // a failed load changes nothing; a good one restores everything, steps as floats accepted
  optim::Adam fresh(two_params());
  nn::StateDict bad_one;
  for (const auto& [k, v] : good) bad_one.insert(k, k == "layer.b/exp_avg" ? core::zeros({5}) : v);
  CHECK_THROWS_AS(fresh.load_state_dict(bad_one), Error);
  CHECK(fresh.step_count() == 0);
  CHECK(core::sum(fresh.state_dict().at("layer.w/exp_avg")).item<double>() == 0);
  nn::StateDict float_steps;
  for (const auto& [k, v] : good)
    float_steps.insert(k, k.ends_with("/step") ? core::to_dtype(v, DType::f32) : v);
  fresh.load_state_dict(float_steps);
  CHECK(fresh.step_count() == 1);
  CHECK(fresh.parameter_step("layer.w") == 1);
  CHECK(fresh.state_dict().at("layer.w/exp_avg").to_vector<float>() == good.at("layer.w/exp_avg").to_vector<float>());
}

TEST_CASE("optim: SGD resumes a momentum buffer only after its first update") {
  // step 0 in the loaded state: the next update starts the buffer as a copy of the gradient
  auto p = param({1.0}, {1}, DType::f64);
  optim::SGD a({{"p", p}}, 0.1, 0.9, 0.5);
  nn::StateDict sd = nn::clone(a.state_dict());
  sd.set("p/momentum_buffer", core::full({1}, 100.0, {DType::f64}));  // ignored: step is 0
  a.load_state_dict(sd);
  p.set_grad(core::full({1}, 1.0, {DType::f64}));
  a.step();
  CHECK(a.state_dict().at("p/momentum_buffer").item<double>() == 1.0);
  CHECK(p.item<double>() == doctest::Approx(0.9).epsilon(1e-15));
}

TEST_CASE("optim: hyperparameters and make_optimizer round trip") {
  const auto ps = two_params();
  const optim::SGD sgd(ps, {.lr = 0.3, .momentum = 0.8, .dampening = 0.1, .weight_decay = 0.01, .maximize = true});
  const optim::Hyperparameters hs = sgd.hyperparameters();
  CHECK(hs.optimizer == "SGD");
  REQUIRE(hs.find("momentum"));
  CHECK(std::get<double>(*hs.find("momentum")) == 0.8);
  CHECK(std::get<bool>(*hs.find("maximize")));
  const auto sgd2 = optim::make_optimizer(ps, hs);
  CHECK(sgd2->name() == "SGD");
  CHECK(sgd2->hyperparameters().values == hs.values);

  optim::AdamW adamw(ps, {.lr = 0.02, .betas = {0.8, 0.95}, .eps = 1e-6, .amsgrad = true});
  adamw.set_lr(0.005);
  const optim::Hyperparameters ha = adamw.hyperparameters();
  CHECK(std::get<double>(*ha.find("lr")) == 0.005);
  CHECK(std::get<double>(*ha.find("beta2")) == 0.95);
  CHECK(std::get<double>(*ha.find("weight_decay")) == 0.01);
  const auto adamw2 = optim::make_optimizer(ps, ha);
  CHECK(adamw2->name() == "AdamW");
  CHECK(adamw2->hyperparameters().values == ha.values);
  CHECK(optim::make_optimizer(ps, {"Adam", {}})->hyperparameters().values == optim::Adam(ps).hyperparameters().values);

  CHECK_THROWS_WITH_AS(optim::make_optimizer(ps, {"Adam", {{"lr", 0.1}, {"momentum", 0.9}}}),
                       Contains("[make_optimizer] Adam: unknown hyperparameters: momentum"), Error);
  CHECK_THROWS_WITH_AS(optim::make_optimizer(ps, {"Adam", {{"amsgrad", 1.0}}}),
                       Contains("'amsgrad' must be a flag, got a number"), Error);
  CHECK_THROWS_WITH_AS(optim::make_optimizer(ps, {"SGD", {}}), Contains("SGD: 'lr' is required"), Error);
  CHECK_THROWS_WITH_AS(optim::make_optimizer(ps, {"Lion", {}}), Contains("unknown optimizer 'Lion'"), Error);
  CHECK_THROWS_WITH_AS(optim::make_optimizer(ps, {"SGD", {{"lr", 0.1}, {"momentum", -1.0}}}),
                       Contains("[SGD] invalid momentum -1"), Error);
}

TEST_CASE("optim: clip_grad_norm by hand") {
  auto make = [] {
    optim::NamedParameters ps{{"a", param({0, 0}, {2})}, {"b", param({0}, {1})}, {"c", param({0}, {1})}};
    ps[0].second.set_grad(core::from_vector<float>({3, 4}, {2}));
    ps[1].second.set_grad(core::from_vector<float>({12}, {1}));  // c has no gradient
    return ps;
  };
  {
    const auto ps = make();
    CHECK(optim::clip_grad_norm(ps, 6.5) == doctest::Approx(13.0));
    const double coef = 6.5 / (13.0 + 1e-6);
    CHECK(ps[0].second.grad().to_vector<float>() == std::vector<float>{float(3 * coef), float(4 * coef)});
    CHECK(ps[1].second.grad().item<float>() == doctest::Approx(12 * coef));
    CHECK(!ps[2].second.grad().defined());
  }
  {
    const auto ps = make();
    CHECK(optim::clip_grad_norm(ps, 100.0) == doctest::Approx(13.0));  // below max_norm: untouched
    CHECK(ps[0].second.grad().to_vector<float>() == std::vector<float>{3, 4});
  }
  {
    const auto ps = make();
    CHECK(optim::clip_grad_norm(ps, 6.0, INFINITY) == 12.0);
    CHECK(ps[1].second.grad().item<float>() == doctest::Approx(6.0));
    CHECK(optim::clip_grad_norm(make(), 1.0, 1.0) == 19.0);
  }
  {
    optim::NamedParameters none{{"a", param({0}, {1})}};
    CHECK(optim::clip_grad_norm(none, 1.0) == 0.0);
  }
  {
    const auto ps = make();
    ps[1].second.set_grad(core::from_vector<float>({NAN}, {1}));
    CHECK_THROWS_WITH_AS(optim::clip_grad_norm(ps, 1.0, 2.0, true), Contains("[clip_grad_norm] total norm is nan"),
                         Error);
    CHECK(ps[0].second.grad().to_vector<float>() == std::vector<float>{3, 4});  // untouched after the error
    CHECK(std::isnan(optim::clip_grad_norm(ps, 1.0)));  // like torch: scaled by NaN
    CHECK(std::isnan(ps[0].second.grad().to_vector<float>()[0]));
  }
  {
    // a non-contiguous gradient is replaced by a contiguous, clipped copy
    optim::NamedParameters ps{{"m", param({0, 0, 0, 0}, {2, 2})}};
    ps[0].second.set_grad(core::transpose(core::from_vector<float>({3, 0, 4, 0}, {2, 2}), 0, 1));
    CHECK(optim::clip_grad_norm(ps, 2.5) == doctest::Approx(5.0));
    CHECK(ps[0].second.grad().is_contiguous());
    CHECK(ps[0].second.grad().to_vector<float>()[1] == doctest::Approx(2.0));
  }
  const auto ps = make();
  CHECK_THROWS_WITH_AS(optim::clip_grad_norm(ps, 1.0, 0.0), Contains("[clip_grad_norm] invalid norm_type 0"), Error);
  CHECK_THROWS_WITH_AS(optim::clip_grad_norm(ps, -1.0), Contains("[clip_grad_norm] invalid max_norm -1"), Error);
}

TEST_CASE("optim: clip_grad_value by hand") {
  auto p = param({0, 0, 0, 0}, {4});
  p.set_grad(core::from_vector<float>({-3, 0.25, NAN, 5}, {4}));
  optim::clip_grad_value(std::vector<ag::Variable>{p}, 1.0);
  const auto g = p.grad().to_vector<float>();
  CHECK(g[0] == -1.0f);
  CHECK(g[1] == 0.25f);
  CHECK(std::isnan(g[2]));
  CHECK(g[3] == 1.0f);
  CHECK_THROWS_WITH_AS(optim::clip_grad_value(std::vector<ag::Variable>{p}, -1.0),
                       Contains("[clip_grad_value] invalid clip_value -1"), Error);
}

TEST_CASE("optim: schedules at key steps") {
  const optim::ConstantLR constant(0.1);
  CHECK(constant.lr_at(0) == 0.1);
  CHECK(constant.lr_at(1000000) == 0.1);

  const optim::WarmupCosine wc(1.0, 10, 110);
  CHECK(wc.lr_at(0) == 0.0);
  CHECK(wc.lr_at(5) == 0.5);
  CHECK(wc.lr_at(10) == 1.0);
  CHECK(wc.lr_at(60) == doctest::Approx(0.5).epsilon(1e-15));
  CHECK(wc.lr_at(110) == 0.0);
  CHECK(wc.lr_at(500) == 0.0);
  const optim::WarmupCosine wc_min(1.0, 10, 110, 0.1);
  CHECK(wc_min.lr_at(60) == doctest::Approx(0.55).epsilon(1e-15));
  CHECK(wc_min.lr_at(110) == 0.1);
  CHECK(wc_min.lr_at(10) == 1.0);
  const optim::WarmupCosine no_warmup(2.0, 0, 100);
  CHECK(no_warmup.lr_at(0) == 2.0);
  CHECK(no_warmup.lr_at(50) == doctest::Approx(1.0).epsilon(1e-15));
  CHECK(optim::WarmupCosine(1.0, 10, 10).lr_at(10) == 0.0);  // no cosine phase: straight to min_lr
  CHECK(wc.describe() == "WarmupCosine(base_lr=1, warmup_steps=10, total_steps=110, min_lr=0)");

  const optim::StepDecay sd(1.0, 3, 0.5);
  CHECK(sd.lr_at(0) == 1.0);
  CHECK(sd.lr_at(2) == 1.0);
  CHECK(sd.lr_at(3) == 0.5);
  CHECK(sd.lr_at(8) == 0.25);
  CHECK(optim::StepDecay(1.0, 30).lr_at(30) == doctest::Approx(0.1));  // gamma 0.1 by default, like StepLR

  CHECK_THROWS_WITH_AS(wc.lr_at(-1), Contains("[WarmupCosine] step -1 is negative"), Error);
  CHECK_THROWS_WITH_AS(optim::WarmupCosine(1.0, 10, 5), Contains("total_steps 5 is less than warmup_steps 10"), Error);
  CHECK_THROWS_WITH_AS(optim::StepDecay(1.0, 0), Contains("[StepDecay] invalid step_size 0"), Error);
  CHECK_THROWS_WITH_AS(optim::ConstantLR(-1.0), Contains("[ConstantLR] invalid learning rate -1"), Error);
}
