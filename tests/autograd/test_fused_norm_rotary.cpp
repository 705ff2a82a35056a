// The fused RMSNorm (ag::rms_norm, core/ops/rms_norm.h) and rotary embedding (ag::rotary,
// core/ops/rotary.h) against the unfused graphs they replace in nn::RMSNorm and
// nn::apply_rotary: forward bit for bit in f32 (same roundings, same order), gradients close, rows
// at and below eps included; bad input. The f64 finite-difference checks are the catalogue's
// entries, and CUDA against CPU its "cuda vs cpu" entries.
#include <doctest/doctest.h>

#include <cmath>
#include <limits>
#include <vector>

#include "autograd/autograd.h"
#include "core/ops/rms_norm.h"
#include "core/ops/rotary.h"
#include "tests/autograd/expect_close.h"

using namespace moegrad;
namespace core = moegrad::core;
using ag::Variable;
using core::DType;
using core::Tensor;
using doctest::Contains;
using fused_test::expect_close;

namespace {

void expect_same_bits(const Tensor& got, const Tensor& want) {
  REQUIRE(got.shape() == want.shape());
  CHECK(got.to_vector<float>() == want.to_vector<float>());
}

// st-moe's RMSNorm as separate autograd ops (what nn::RMSNorm ran before the fusion).
Variable unfused_rms_norm(const Variable& x, const Variable& g, double scale, double eps) {
  const Variable n = ag::clamp(ag::norm(x, 2.0, {-1}, true), eps, std::numeric_limits<double>::infinity());
  return ag::mul(ag::mul(ag::div(x, n), g), scale);
}

Variable unfused_rotary(const Variable& x, const Tensor& cos, const Tensor& sin) {
  const std::int64_t half = x.size(-1) / 2;
  const Variable x1 = ag::narrow(x, -1, 0, half), x2 = ag::narrow(x, -1, half, half);
  const Variable c = ag::constant(cos), s = ag::constant(sin);
  return ag::cat({ag::sub(ag::mul(x1, c), ag::mul(x2, s)), ag::add(ag::mul(x1, s), ag::mul(x2, c))}, -1);
}

}  // namespace

TEST_CASE("rms_norm: the unfused graph's bits forward, its gradients backward, rows at and below eps") {
  core::Generator gen(3);
  const double eps = 1e-3;
  Tensor x0 = core::randn({6, 16}, {}, &gen);
  // Row 1 all zero, row 2 far below eps, row 3 exactly at eps (norm == eps: the norm's gradient
  // flows there, as PyTorch's clamp lets it).
  core::fill_(core::select(x0, 0, 1), 0.0);
  core::copy_(core::select(x0, 0, 2), core::mul(core::select(x0, 0, 2), 1e-6));
  core::fill_(core::select(x0, 0, 3), 0.0);
  core::fill_(core::select(core::select(x0, 0, 3), 0, 5), eps);
  const Tensor gamma0 = core::add(core::randn({16}, {}, &gen), 1.0);
  const Tensor w = core::randn({6, 16}, {}, &gen);
  for (const DType dt : {DType::f32, DType::f64}) {
    INFO(core::dtype_name(dt));
    const Variable xa(core::to_dtype(x0, dt), true), ga(core::to_dtype(gamma0, dt), true);
    const Variable xb(core::to_dtype(x0, dt), true), gb(core::to_dtype(gamma0, dt), true);
    const Variable fused = ag::rms_norm(xa, ga, 4.0, eps), unfused = unfused_rms_norm(xb, gb, 4.0, eps);
    if (dt == DType::f32) expect_same_bits(fused.value(), unfused.value());
    const double tol = dt == DType::f32 ? 2e-5 : 1e-12;
    expect_close("forward", fused.value(), unfused.value(), tol, tol);
    ag::sum(ag::mul(fused, ag::constant(core::to_dtype(w, dt)))).backward();
    ag::sum(ag::mul(unfused, ag::constant(core::to_dtype(w, dt)))).backward();
    expect_close("d x", xa.grad(), xb.grad(), tol, tol);
    expect_close("d gamma", ga.grad(), gb.grad(), tol, tol);
    const auto dx = xa.grad().to_vector<double>();
    for (std::size_t i = 16; i < 32; ++i) CHECK(std::isfinite(dx[i]));  // the zero row: finite
  }
}

TEST_CASE("rms_norm: only the needed gradients, gamma without one") {
  core::Generator gen(5);
  const Variable x(core::randn({2, 3, 8}, {}, &gen), true);
  const Variable gamma(core::ones({8}));  // a constant
  ag::sum(ag::rms_norm(x, gamma, 2.0, 1e-12)).backward();
  CHECK(x.grad().defined());
  const auto both = core::rms_norm_backward(core::ones({2, 3, 8}), x.value(), gamma.value(),
                                            core::norm(x.value(), 2.0, {-1}, true), 2.0, 1e-12, false, true);
  CHECK_FALSE(both[0].defined());
  CHECK(both[1].defined());
}

TEST_CASE("rms_norm: bad input is one line naming the op") {
  const Tensor x = core::ones({2, 4}), g = core::ones({4});
  CHECK_THROWS_WITH(core::rms_norm(x, core::ones({3}), 1.0, 1e-12), Contains("rms_norm"));
  CHECK_THROWS_WITH(core::rms_norm(x, g, 1.0, 0.0), Contains("eps must be finite and > 0"));
  CHECK_THROWS_WITH(core::rms_norm(core::ones({2, 4}, {DType::i64}), core::ones({4}, {DType::i64}), 1.0, 1e-12),
                    Contains("needs f32 or f64"));
  CHECK_THROWS_WITH(core::rms_norm_backward(core::ones({2, 4}), x, g, core::ones({2}), 1.0, 1e-12, true, true),
                    Contains("norm"));
}

TEST_CASE("rotary: the unfused graph's bits forward, its gradients backward, on permuted heads") {
  core::Generator gen(9);
  const std::int64_t B = 2, T = 5, H = 3, D = 8;
  std::vector<double> c, s;
  for (const double a : core::mul(core::randn({T, D / 2}, {}, &gen), 2.0).to_vector<double>())
    c.push_back(std::cos(a)), s.push_back(std::sin(a));
  const Tensor w = core::randn({B, H, T, D}, {}, &gen);
  const Tensor base = core::randn({B, T, H, D}, {}, &gen);
  for (const DType dt : {DType::f32, DType::f64}) {
    INFO(core::dtype_name(dt));
    const Tensor cos = core::to_dtype(core::from_vector<double>(c, {T, D / 2}), dt);
    const Tensor sin = core::to_dtype(core::from_vector<double>(s, {T, D / 2}), dt);
    // [B, T, H, D] viewed as [B, H, T, D] in place, as CausalSelfAttention hands q and k over.
    const Variable xa(core::to_dtype(base, dt), true), xb(core::to_dtype(base, dt), true);
    const Variable fused = ag::rotary(ag::permute(xa, {0, 2, 1, 3}), cos, sin);
    const Variable unfused = unfused_rotary(ag::permute(xb, {0, 2, 1, 3}), cos, sin);
    if (dt == DType::f32) expect_same_bits(fused.value(), unfused.value());
    const double tol = dt == DType::f32 ? 1e-6 : 1e-14;
    ag::sum(ag::mul(fused, ag::constant(core::to_dtype(w, dt)))).backward();
    ag::sum(ag::mul(unfused, ag::constant(core::to_dtype(w, dt)))).backward();
    expect_close("d x", xa.grad(), xb.grad(), tol, tol);
  }
}

TEST_CASE("rotary: inverse undoes the rotation; bad input is one line naming the op") {
  core::Generator gen(2);
  const Tensor x = core::randn({4, 6}, {}, &gen);
  std::vector<double> c, s;
  for (int i = 0; i < 12; ++i) c.push_back(std::cos(0.3 * i)), s.push_back(std::sin(0.3 * i));
  const Tensor cos = core::from_vector<double>(c, {4, 3}), sin = core::from_vector<double>(s, {4, 3});
  const Tensor x64 = core::to_dtype(x, DType::f64);
  expect_close("round trip", core::rotary(core::rotary(x64, cos, sin), cos, sin, true), x64, 1e-14, 1e-14);
  CHECK_THROWS_WITH(core::rotary(core::ones({4, 5}, {DType::f64}), cos, sin), Contains("D even"));
  CHECK_THROWS_WITH(core::rotary(x64, core::ones({4, 2}, {DType::f64}), sin), Contains("must broadcast to x's half shape"));
  CHECK_THROWS_WITH(core::rotary(x, cos, sin), Contains("rotary"));  // f32 x with f64 tables
}
