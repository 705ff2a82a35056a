// The building blocks: state_dict keys and shapes (PyTorch's names), init, forward values
// against hand-computed cases, and input errors.
#include <doctest/doctest.h>

#include <cmath>
#include <memory>
#include <string>

#include "layers/layers.h"

namespace ag = moegrad::ag;
namespace core = moegrad::core;
namespace nn = moegrad::nn;
using ag::Variable;
using core::Shape;
using core::Tensor;
using doctest::Approx;
using doctest::Contains;
using moegrad::Error;

namespace {

using Keys = std::vector<std::pair<std::string, Shape>>;

Keys keys_of(const nn::Module& m) {
  Keys out;
  for (const auto& [k, v] : m.state_dict()) out.emplace_back(k, v.shape());
  return out;
}

Tensor f(std::vector<float> v, Shape s) { return core::from_vector<float>(v, s); }
std::vector<float> values(const Tensor& t) { return t.to_vector<float>(); }
std::vector<float> values(const Variable& v) { return v.value().to_vector<float>(); }

double max_abs(const Tensor& t) { return core::amax(core::abs(t)).item<double>(); }

double gelu_ref(double x) { return 0.5 * x * (1.0 + std::erf(x / std::sqrt(2.0))); }

void check_close(const std::vector<float>& got, const std::vector<double>& want, double tol = 1e-6) {
  REQUIRE(got.size() == want.size());
  for (std::size_t i = 0; i < got.size(); ++i) CHECK(got[i] == Approx(want[i]).epsilon(tol));
}

}  // namespace

// ---- state_dict keys -----------------------------------------------------------------------

TEST_CASE("layers: state_dict keys and shapes of the basic blocks") {
  CHECK(keys_of(nn::Linear(4, 3)) == Keys{{"weight", {3, 4}}, {"bias", {3}}});
  CHECK(keys_of(nn::Linear(4, 3, false)) == Keys{{"weight", {3, 4}}});
  CHECK(keys_of(nn::RMSNorm(5)) == Keys{{"gamma", {5}}});
  CHECK(keys_of(nn::GEGLU(5)) == Keys{{"mult_bias", {5}}});
  CHECK(keys_of(nn::GEGLU(5, false)).empty());
  CHECK(keys_of(nn::GELU()).empty());
  CHECK(keys_of(nn::ReLU()).empty());
  CHECK(keys_of(nn::LeakyReLU()).empty());
  nn::Sequential s{std::make_shared<nn::Linear>(2, 3), std::make_shared<nn::GELU>(), std::make_shared<nn::Linear>(3, 1)};
  CHECK(keys_of(s) == Keys{{"0.weight", {3, 2}}, {"0.bias", {3}}, {"2.weight", {1, 3}}, {"2.bias", {1}}});
  CHECK(s.size() == 3);
  CHECK_THROWS_WITH_AS(s[3], Contains("[Sequential] index 3 out of range for 3 modules"), Error);
}

TEST_CASE("layers: st-moe Expert keys match st_moe_pytorch (prenorm shifts the indices)") {
  // hidden = int(dim * hidden_mult * 2 / 3)
  CHECK(nn::st::Expert::hidden_dim_for(512, 4) == 1365);
  CHECK(nn::st::Expert::hidden_dim_for(6, 4) == 16);
  CHECK(nn::st::Expert::hidden_dim_for(4, 4) == 10);
  CHECK(nn::st::Expert::hidden_dim_for(3, 4) == 8);  // 24 / 3 exactly
  CHECK(nn::st::Expert::hidden_dim_for(8, 2.5) == 13);
  const std::int64_t d = 6, h = 16;
  CHECK(keys_of(nn::st::Expert(d)) ==
        Keys{{"net.0.weight", {2 * h, d}}, {"net.0.bias", {2 * h}}, {"net.1.mult_bias", {h}}, {"net.2.weight", {d, h}},
             {"net.2.bias", {d}}});
  CHECK(keys_of(nn::st::Expert(d, 4, true, /*prenorm=*/true)) ==
        Keys{{"net.0.gamma", {d}},
             {"net.1.weight", {2 * h, d}},
             {"net.1.bias", {2 * h}},
             {"net.2.mult_bias", {h}},
             {"net.3.weight", {d, h}},
             {"net.3.bias", {d}}});
  CHECK(keys_of(nn::st::Expert(d, 4, /*mult_bias=*/false)) ==
        Keys{{"net.0.weight", {2 * h, d}}, {"net.0.bias", {2 * h}}, {"net.2.weight", {d, h}}, {"net.2.bias", {d}}});
}

TEST_CASE("layers: zeta and lucidrains Experts keys") {
  CHECK(keys_of(nn::zeta::Experts(4, 3)) == Keys{{"w1", {3, 4, 8}}, {"w2", {3, 8, 8}}, {"w3", {3, 8, 4}}});
  CHECK(keys_of(nn::zeta::Experts(4)) == Keys{{"w1", {16, 4, 8}}, {"w2", {16, 8, 8}}, {"w3", {16, 8, 4}}});
  CHECK(keys_of(nn::lmoe::Experts(4, 3)) == Keys{{"w1", {3, 4, 16}}, {"w2", {3, 16, 4}}});
  CHECK(keys_of(nn::lmoe::Experts(4, 3, 5)) == Keys{{"w1", {3, 4, 5}}, {"w2", {3, 5, 4}}});
  CHECK(keys_of(nn::lmoe::Experts(4, std::vector<std::int64_t>{2, 3}, 6)) ==
        Keys{{"w1", {2, 3, 4, 6}}, {"w2", {2, 3, 6, 4}}});
  CHECK(keys_of(nn::lmoe::Experts(4, 3, 0, std::make_shared<nn::ReLU>())) == Keys{{"w1", {3, 4, 16}}, {"w2", {3, 16, 4}}});
}

// ---- init ----------------------------------------------------------------------------------

TEST_CASE("layers: initialisation ranges, dtype option and generator determinism") {
  core::Generator g(11);
  nn::Linear l(16, 64, true, {}, &g);
  CHECK(max_abs(l.weight().value()) <= 0.25);  // U(±1/sqrt(16))
  CHECK(max_abs(l.weight().value()) > 0.2);
  CHECK(max_abs(l.bias().value()) <= 0.25);
  core::Generator g1(3), g2(3), g3(4);
  CHECK(values(nn::Linear(5, 7, true, {}, &g1).weight()) == values(nn::Linear(5, 7, true, {}, &g2).weight()));
  CHECK(values(nn::Linear(5, 7, true, {}, &g1).weight()) != values(nn::Linear(5, 7, true, {}, &g3).weight()));
  // The default generator is used when none is given.
  core::manual_seed(5);
  const auto a = values(nn::Linear(3, 3).weight());
  core::manual_seed(5);
  CHECK(values(nn::Linear(3, 3).weight()) == a);

  // st Expert re-init: U(±out_features^-0.5) for weight and bias of both Linears.
  core::Generator ge(1);
  nn::st::Expert e(6, 4, true, false, {}, &ge);  // L1 [32, 6], L2 [6, 16]
  const double b1 = 1 / std::sqrt(32.0), b2 = 1 / std::sqrt(6.0);
  CHECK(max_abs(e.parameter("net.0.weight").value()) <= b1);  // tighter than the default 1/sqrt(6)
  CHECK(max_abs(e.parameter("net.0.bias").value()) <= b1);
  CHECK(max_abs(e.parameter("net.2.weight").value()) <= b2);
  CHECK(max_abs(e.parameter("net.2.weight").value()) > 0.25);  // wider than the default 1/sqrt(16)
  CHECK(max_abs(e.parameter("net.2.bias").value()) <= b2);
  CHECK(values(e.parameter("net.1.mult_bias").value()) == std::vector<float>(16, 1.f));

  // lmoe: w1 ~ U(±1/sqrt(h)), w2 ~ U(±1/sqrt(d)).
  nn::lmoe::Experts le(4, 3, 64, nullptr, {}, &ge);
  CHECK(max_abs(le.parameter("w1").value()) <= 0.125);
  CHECK(max_abs(le.parameter("w2").value()) <= 0.5);
  CHECK(max_abs(le.parameter("w2").value()) > 0.3);
  // zeta: N(0, 1), unscaled.
  nn::zeta::Experts ze(8, 4, {}, &ge);
  const double sd = std::sqrt(core::mean(core::square(ze.parameter("w2").value())).item<double>());
  CHECK(sd == Approx(1.0).epsilon(0.1));

  // Every module takes TensorOptions: f64 modules.
  const core::TensorOptions f64{core::DType::f64};
  nn::st::Expert e64(4, 4, true, true, f64);
  for (const auto& p : e64.parameters()) CHECK(p.dtype() == core::DType::f64);
  CHECK(nn::zeta::Experts(2, 2, f64).parameter("w1").dtype() == core::DType::f64);
  CHECK(nn::lmoe::Experts(2, 2, 0, nullptr, f64).parameter("w2").dtype() == core::DType::f64);
}

// ---- forward values ------------------------------------------------------------------------

TEST_CASE("layers: Linear forward by hand, any leading dims") {
  nn::Linear l(3, 2);
  nn::StateDict sd;
  sd.insert("weight", f({1, 2, 3, 4, 5, 6}, {2, 3}));
  sd.insert("bias", f({0.5f, -1}, {2}));
  l.load_state_dict(sd);
  const Tensor x = f({1, 0, -1, 2, 1, 0}, {2, 3});
  CHECK(values(l.forward(Variable(x))) == std::vector<float>{-1.5f, -3, 4.5f, 12});
  const Variable y3 = l.forward(Variable(core::reshape(x, {2, 1, 3})));
  CHECK(y3.shape() == Shape{2, 1, 2});
  CHECK(values(y3) == std::vector<float>{-1.5f, -3, 4.5f, 12});
  const Variable y1 = l(Variable(f({1, 1, 1}, {3})));
  CHECK(y1.shape() == Shape{2});
  CHECK(values(y1) == std::vector<float>{6.5f, 14});
  // A transposed (non-contiguous) input.
  const Variable yt = l.forward(Variable(core::transpose(f({1, 2, 0, 1, -1, 0}, {3, 2}), 0, 1)));
  CHECK(values(yt) == std::vector<float>{-1.5f, -3, 4.5f, 12});
  // Without bias; gradient reaches the weight.
  nn::Linear nb(3, 2, false);
  nb.set_parameter("weight", Variable(f({1, 2, 3, 4, 5, 6}, {2, 3}), true));
  Variable out = nb.forward(Variable(x));
  CHECK(values(out) == std::vector<float>{-2, -2, 4, 13});
  ag::sum(out).backward();
  CHECK(values(nb.weight().grad()) == std::vector<float>{3, 1, -1, 3, 1, -1});
}

TEST_CASE("layers: RMSNorm forward by hand, zero rows stay finite") {
  nn::RMSNorm n(2);
  n.set_parameter("gamma", Variable(f({1, 2}, {2}), true));
  const Variable y = n.forward(Variable(f({3, 4, 0, 0, -6, 8}, {3, 2})));
  const double s = std::sqrt(2.0);
  check_close(values(y), {0.6 * s, 1.6 * s, 0, 0, -0.6 * s, 1.6 * s});
  // Same as x / rms(x) * gamma for a nonzero row.
  nn::RMSNorm n4(4);
  const Tensor x = f({1, -2, 3, 0.5f}, {4});
  const double rms = std::sqrt((1 + 4 + 9 + 0.25) / 4.0);
  check_close(values(n4.forward(Variable(x))), {1 / rms, -2 / rms, 3 / rms, 0.5 / rms});
}

TEST_CASE("layers: GEGLU forward by hand (first half is the value)") {
  nn::GEGLU g(2);
  g.set_parameter("mult_bias", Variable(f({1, 3}, {2}), true));
  const Variable y = g.forward(Variable(f({1, 2, 0.5f, -1, -2, 4, 1.5f, 0}, {2, 4})));
  CHECK(y.shape() == Shape{2, 2});
  check_close(values(y), {gelu_ref(0.5) * 1 * 1, gelu_ref(-1) * 2 * 3, gelu_ref(1.5) * -2 * 1, 0.0});
  nn::GEGLU plain(1, false);
  check_close(values(plain.forward(Variable(f({3, 2}, {2})))), {gelu_ref(2) * 3});
}

TEST_CASE("layers: activation modules") {
  const Variable x(f({-2, -0.5f, 0, 1.5f}, {4}));
  check_close(values(nn::GELU().forward(x)), {gelu_ref(-2), gelu_ref(-0.5), 0, gelu_ref(1.5)});
  const double c = std::sqrt(2 / M_PI);
  auto gt = [&](double v) { return 0.5 * v * (1 + std::tanh(c * (v + 0.044715 * v * v * v))); };
  check_close(values(nn::GELU(nn::GeluApproximation::tanh).forward(x)), {gt(-2), gt(-0.5), 0, gt(1.5)});
  CHECK(values(nn::ReLU().forward(x)) == std::vector<float>{0, 0, 0, 1.5f});
  check_close(values(nn::LeakyReLU().forward(x)), {-0.02, -0.005, 0, 1.5});
  check_close(values(nn::LeakyReLU(0.2).forward(x)), {-0.4, -0.1, 0, 1.5});
  CHECK(nn::LeakyReLU().extra_repr() == "negative_slope=0.01");
}

TEST_CASE("layers: st-moe Expert forward equals its composition") {
  core::Generator g(21);
  nn::st::Expert e(4, 4, true, true, {}, &g);
  const Variable x(core::randn({2, 3, 4}, {}, &g));
  const auto& net = *e.net();
  Variable ref = x;
  for (std::size_t i = 0; i < net.size(); ++i) ref = net[i]->forward(ref);
  CHECK(e.forward(x).shape() == Shape{2, 3, 4});
  CHECK(values(e.forward(x)) == values(ref));
  // By hand: Linear -> GEGLU -> Linear with the composition written out.
  nn::st::Expert p(4, 4, true, false, {}, &g);
  const Tensor w1 = p.parameter("net.0.weight").value(), b1 = p.parameter("net.0.bias").value();
  const Tensor w2 = p.parameter("net.2.weight").value(), b2 = p.parameter("net.2.bias").value();
  const Tensor mb = p.parameter("net.1.mult_bias").value();
  const Tensor hx = core::add(core::matmul(x.value(), w1, false, true), b1);
  const auto parts = core::chunk(hx, 2, -1);
  const Tensor act = core::mul(core::mul(core::gelu(parts[1]), parts[0]), mb);
  const Tensor want = core::add(core::matmul(act, w2, false, true), b2);
  const auto got = values(p.forward(x));
  const auto exp = values(want);
  for (std::size_t i = 0; i < got.size(); ++i) CHECK(got[i] == Approx(exp[i]).epsilon(1e-5));
}

TEST_CASE("layers: zeta Experts forward by hand, [1, n, d] broadcasts") {
  nn::zeta::Experts z(1, 1);
  nn::StateDict sd;
  sd.insert("w1", f({1, -1}, {1, 1, 2}));
  sd.insert("w2", f({1, 0, 0, 1}, {1, 2, 2}));
  sd.insert("w3", f({1, 1}, {1, 2, 1}));
  z.load_state_dict(sd);
  // x @ w1 = [2, -2] -> leaky [2, -0.02] -> @ I -> leaky [2, -0.0002] -> @ [1, 1] = 1.9998
  check_close(values(z.forward(Variable(f({2}, {1, 1, 1})))), {1.9998});

  core::Generator g(3);
  nn::zeta::Experts ze(3, 2, {}, &g);
  const Tensor x = core::randn({2, 5, 3}, {}, &g);
  const auto y = values(ze.forward(Variable(x)));
  for (std::int64_t e = 0; e < 2; ++e) {  // each expert on its own slice
    auto w = [&](const char* n) { return core::select(ze.parameter(n).value(), 0, e); };
    Tensor h = core::leaky_relu(core::matmul(core::select(x, 0, e), w("w1")), 0.01);
    h = core::leaky_relu(core::matmul(h, w("w2")), 0.01);
    const auto want = values(core::matmul(h, w("w3")));
    for (std::size_t i = 0; i < want.size(); ++i) CHECK(y[e * 15 + i] == Approx(want[i]).epsilon(1e-5));
  }
  const Tensor x1 = core::narrow(x, 0, 0, 1);
  const Variable yb = ze.forward(Variable(x1));
  CHECK(yb.shape() == Shape{2, 5, 3});
  CHECK(values(yb) == values(ze.forward(Variable(core::contiguous(core::expand(x1, {2, 5, 3}))))));
}

TEST_CASE("layers: lucidrains Experts forward, tuple experts, activation choice") {
  core::Generator g(9);
  nn::lmoe::Experts le(3, std::vector<std::int64_t>{2, 2}, 5, nullptr, {}, &g);
  const Tensor x = core::randn({2, 2, 4, 3}, {}, &g);
  const Tensor w1 = le.parameter("w1").value(), w2 = le.parameter("w2").value();
  const auto want = values(core::matmul(core::gelu(core::matmul(x, w1)), w2));
  const auto got = values(le.forward(Variable(x)));
  CHECK(le.forward(Variable(x)).shape() == Shape{2, 2, 4, 3});
  for (std::size_t i = 0; i < want.size(); ++i) CHECK(got[i] == Approx(want[i]).epsilon(1e-5));
  nn::lmoe::Experts lr(3, 2, 0, std::make_shared<nn::ReLU>(), {}, &g);
  CHECK(lr.hidden_dim() == 12);
  CHECK(lr.child("act")->name() == "ReLU");
  const Tensor x2 = core::randn({2, 4, 3}, {}, &g);
  const auto want2 = values(core::matmul(core::relu(core::matmul(x2, lr.parameter("w1").value())), lr.parameter("w2").value()));
  const auto got2 = values(lr.forward(Variable(x2)));
  for (std::size_t i = 0; i < want2.size(); ++i) CHECK(got2[i] == Approx(want2[i]).epsilon(1e-5));
}

// ---- errors --------------------------------------------------------------------------------

TEST_CASE("layers: bad inputs name the module and the shapes") {
  nn::Linear l(4, 3);
  CHECK_THROWS_WITH_AS(l.forward(Variable(core::zeros({2, 5}))), "[Linear] input last dim 5 != in_features 4: f32(2, 5)",
                       Error);
  CHECK_THROWS_WITH_AS(l.forward(Variable(core::zeros({}))), "[Linear] input needs at least 1 dim: f32()", Error);
  CHECK_THROWS_WITH_AS(l.forward(Variable(core::zeros({2, 4}, {core::DType::f64}))),
                       "[Linear] input dtype f64 != parameter dtype f32: f64(2, 4)", Error);
  CHECK_THROWS_WITH_AS(l.forward(Variable()), "[Linear] input is undefined", Error);
  CHECK_THROWS_WITH_AS(nn::Linear(0, 3), Contains("[Linear] in_features and out_features must be > 0"), Error);
  CHECK_THROWS_WITH_AS(nn::RMSNorm(3).forward(Variable(core::zeros({2, 4}))),
                       "[RMSNorm] input last dim 4 != dim 3: f32(2, 4)", Error);
  CHECK_THROWS_WITH_AS(nn::GEGLU(3).forward(Variable(core::zeros({2, 5}))),
                       "[GEGLU] input last dim 5 != 2 * dim 6: f32(2, 5)", Error);
  CHECK_THROWS_WITH_AS(nn::st::Expert(4).forward(Variable(core::zeros({3}))),
                       "[st.Expert] input last dim 3 != dim 4: f32(3,)", Error);
  CHECK_THROWS_WITH_AS(nn::st::Expert(1, 1), Contains("[st.Expert] hidden dim int(1 * 1 * 2 / 3) = 0 must be > 0"), Error);
  nn::zeta::Experts z(4, 2);
  CHECK_THROWS_WITH_AS(z.forward(Variable(core::zeros({3, 5, 4}))),
                       "[zeta.Experts] input must be [experts=2 (or 1), tokens, dim=4], got f32(3, 5, 4)", Error);
  CHECK_THROWS_WITH_AS(z.forward(Variable(core::zeros({5, 4}))),
                       "[zeta.Experts] input must be [experts=2 (or 1), tokens, dim=4], got f32(5, 4)", Error);
  nn::lmoe::Experts le(4, std::vector<std::int64_t>{2, 3});
  CHECK_THROWS_WITH_AS(le.forward(Variable(core::zeros({2, 4, 5, 4}))),
                       "[lmoe.Experts] input must be [2, 3, rows, dim=4] (a leading dim may be 1), got f32(2, 4, 5, 4)",
                       Error);
  CHECK_THROWS_WITH_AS(le.forward(Variable(core::zeros({3, 5, 4}))), Contains("got f32(3, 5, 4)"), Error);
  CHECK_THROWS_WITH_AS(nn::lmoe::Experts(4, 3).forward(Variable(core::zeros({2, 5, 4}))),
                       "[lmoe.Experts] input must be [3, rows, dim=4] (a leading dim may be 1), got f32(2, 5, 4)", Error);
  CHECK(le.forward(Variable(core::zeros({1, 3, 5, 4}))).shape() == Shape{2, 3, 5, 4});
}
