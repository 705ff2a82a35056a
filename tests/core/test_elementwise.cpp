// Elementwise ops against closed-form values, broadcasting, layouts and errors.
#include <doctest/doctest.h>

#include <cmath>
#include <limits>

#include "core/ops.h"
#include "core/kernels/scalar_math.h"

using namespace moegrad::core;
using doctest::Approx;
using doctest::Contains;
using moegrad::Error;

namespace {
std::vector<double> dv(const Tensor& t) { return t.to_vector<double>(); }
Tensor d(std::vector<double> v) { return from_vector<double>(v); }
}  // namespace

TEST_CASE("elementwise: closed-form values") {
  const Tensor x = d({-2.0, -0.5, 0.0, 1.0, 3.0});
  const auto ref = [&](auto f) {
    std::vector<double> out;
    for (double v : dv(x)) out.push_back(f(v));
    return out;
  };
  CHECK(dv(exp(x)) == ref([](double v) { return std::exp(v); }));
  CHECK(dv(tanh(x)) == ref([](double v) { return std::tanh(v); }));
  CHECK(dv(relu(x)) == std::vector<double>{0, 0, 0, 1, 3});
  CHECK(dv(leaky_relu(x, 0.1)) == std::vector<double>{-0.2, -0.05, 0, 1, 3});
  CHECK(dv(abs(x)) == std::vector<double>{2, 0.5, 0, 1, 3});
  CHECK(dv(sign(x)) == std::vector<double>{-1, -1, 0, 1, 1});
  CHECK(dv(square(x)) == std::vector<double>{4, 0.25, 0, 1, 9});
  CHECK(dv(neg(x)) == std::vector<double>{2, 0.5, -0.0, -1, -3});
  // Known values: gelu(1) = Phi(1) = 0.8413447460685429; tanh form 0.8411919906082768.
  CHECK(dv(gelu(d({1.0})))[0] == Approx(0.8413447460685429).epsilon(1e-14));
  CHECK(dv(gelu_tanh(d({1.0})))[0] == Approx(0.8411919906082768).epsilon(1e-14));
  CHECK(dv(silu(d({1.0})))[0] == Approx(0.7310585786300049).epsilon(1e-14));
  CHECK(dv(sigmoid(d({0.0})))[0] == 0.5);
  CHECK(dv(sigmoid(d({-30.0})))[0] == Approx(9.357622968840175e-14).epsilon(1e-12));  // no cancellation
  CHECK(sigmoid(from_vector<float>({-90.f})).item<float>() > 0.f);
  CHECK(dv(sqrt(d({4.0, 2.25}))) == std::vector<double>{2, 1.5});
  CHECK(dv(rsqrt(d({4.0})))[0] == 0.5);
  CHECK(dv(log(d({1.0, std::exp(2.0)})))[1] == Approx(2.0));
  CHECK(dv(pow(d({2.0, 3.0}), 2.0)) == std::vector<double>{4, 9});
  CHECK(dv(clamp(x, -1, 1)) == std::vector<double>{-1, -0.5, 0, 1, 1});
}

TEST_CASE("elementwise: stable at the extremes") {
  const Tensor big = from_vector<float>({-1000.f, 1000.f});
  CHECK(sigmoid(big).to_vector<float>() == std::vector<float>{0.f, 1.f});
  CHECK(silu(big).to_vector<float>() == std::vector<float>{-0.f, 1000.f});
  CHECK(tanh(big).to_vector<float>() == std::vector<float>{-1.f, 1.f});
  const double nan = std::numeric_limits<double>::quiet_NaN();
  CHECK(std::isnan(dv(clamp(d({nan}), 0, 1))[0]));  // NaN passes through, like torch.clamp
  CHECK(std::isnan(dv(relu(d({nan})))[0]));
  CHECK(std::isnan(dv(maximum(d({nan, 1}), d({0, nan})))[0]));
  CHECK(std::isnan(dv(maximum(d({nan, 1}), d({0, nan})))[1]));
  CHECK(isfinite(d({1.0, nan, INFINITY})).to_vector<int>() == std::vector<int>{1, 0, 0});
}

TEST_CASE("elementwise: broadcasting and layouts") {
  const Tensor a = from_vector<float>({1, 2, 3, 4, 5, 6}, {2, 3});
  const Tensor row = from_vector<float>({10, 20, 30});
  const Tensor col = from_vector<float>({100, 200}, {2, 1});
  CHECK(add(a, row).to_vector<float>() == std::vector<float>{11, 22, 33, 14, 25, 36});
  CHECK(add(a, col).to_vector<float>() == std::vector<float>{101, 102, 103, 204, 205, 206});
  CHECK(add(row, col).shape() == Shape{2, 3});
  CHECK(mul(a, 2.0).to_vector<float>() == std::vector<float>{2, 4, 6, 8, 10, 12});
  CHECK(rsub(a, 1.0).to_vector<float>()[0] == 0.f);
  // Transposed and sliced operands give the same as their contiguous copies.
  const Tensor t = transpose(a, 0, 1);
  CHECK(sub(t, contiguous(t)).to_vector<float>() == std::vector<float>(6, 0.f));
  const Tensor s = slice(a, 1, 0, 3, 2);
  CHECK(mul(s, s).to_vector<float>() == std::vector<float>{1, 9, 16, 36});
  // Integer arithmetic stays integer.
  const Tensor i = from_vector<std::int64_t>({1, 2, 3});
  CHECK(add(i, i).to_vector<std::int64_t>() == std::vector<std::int64_t>{2, 4, 6});
  CHECK(add(i, i).dtype() == DType::i64);
}

TEST_CASE("elementwise: comparisons, logic and where") {
  const Tensor a = from_vector<float>({1, 2, 3});
  const Tensor b = from_vector<float>({3, 2, 1});
  CHECK(lt(a, b).to_vector<int>() == std::vector<int>{1, 0, 0});
  CHECK(le(a, b).to_vector<int>() == std::vector<int>{1, 1, 0});
  CHECK(gt(a, b).to_vector<int>() == std::vector<int>{0, 0, 1});
  CHECK(ge(a, 2.0).to_vector<int>() == std::vector<int>{0, 1, 1});
  CHECK(eq(a, b).to_vector<int>() == std::vector<int>{0, 1, 0});
  CHECK(ne(a, b).dtype() == DType::b8);
  const Tensor m = lt(a, b), n = gt(a, 1.5);
  CHECK(logical_and(m, n).to_vector<int>() == std::vector<int>{0, 0, 0});
  CHECK(logical_or(m, n).to_vector<int>() == std::vector<int>{1, 1, 1});
  CHECK(logical_not(m).to_vector<int>() == std::vector<int>{0, 1, 1});
  CHECK(where(m, a, b).to_vector<float>() == std::vector<float>{1, 2, 1});
  CHECK(where(m, a, scalar_tensor(-1.0)).to_vector<float>() == std::vector<float>{1, -1, -1});
}

TEST_CASE("elementwise: in-place updates") {
  Tensor x = from_vector<float>({1, 2, 3, 4}, {2, 2});
  add_(x, from_vector<float>({1, 1}), 0.5);
  CHECK(x.to_vector<float>() == std::vector<float>{1.5, 2.5, 3.5, 4.5});
  mul_(x, 2.0);
  CHECK(x.to_vector<float>() == std::vector<float>{3, 5, 7, 9});
  CHECK_THROWS_WITH_AS(add_(expand(zeros({1}), {3}), ones({3})), Contains("[add_] destination f32(3,) is a broadcast view"), Error);
}

TEST_CASE("elementwise: large inputs take the parallel path with identical results") {
  const std::int64_t n = 1 << 20;
  Generator gen(7);
  const Tensor x = randn({n}, {}, &gen);
  const Tensor y = exp(x);
  const auto xv = x.to_vector<float>(), yv = y.to_vector<float>();
  for (std::int64_t i = 0; i < n; i += 997) {
    CHECK(yv[i] == math::fast_exp(xv[i]));  // bitwise: the parallel loop runs the same function
    CHECK(yv[i] == Approx(std::exp(xv[i])).epsilon(2.5e-7));  // within ~2 ulp of libm
  }
  const Tensor t = transpose(reshape(x, {1024, 1024}), 0, 1);
  const auto tv = add(t, t).to_vector<float>();
  CHECK(tv[1] == 2 * xv[1024]);
}

TEST_CASE("elementwise: errors name the op, dtypes and shapes") {
  const Tensor a = zeros({2, 3});
  CHECK_THROWS_WITH_AS(add(a, zeros({4})), Contains("[add] shapes (2, 3) and (4,) do not broadcast"), Error);
  CHECK_THROWS_WITH_AS(mul(a, zeros({2, 3}, {DType::f64})), Contains("[mul] dtype mismatch: f32(2, 3) vs f64(2, 3)"), Error);
  CHECK_THROWS_WITH_AS(exp(zeros({2}, {DType::i64})), Contains("[exp] dtype i64 not supported (needs f32 or f64)"), Error);
  CHECK_THROWS_WITH_AS(div(arange(3), arange(3)), Contains("[div] dtype i64 not supported"), Error);
  CHECK_THROWS_WITH_AS(where(a, a, a), Contains("[where] condition must be bool, got f32(2, 3)"), Error);
  CHECK_THROWS_WITH_AS(logical_and(a, a), Contains("[logical_and] needs bool tensors"), Error);
  CHECK_THROWS_WITH_AS(clamp(a, 1, 0), Contains("[clamp] lo 1 > hi 0"), Error);
}

TEST_CASE("elementwise: the vectorisable f32 erf behind GELU is within 5e-7 of erf") {
  double worst = 0.0;
  for (float x = -6.0f; x <= 6.0f; x += 1.0f / 4096.0f)
    worst = std::max(worst, std::fabs(double(math::erf_f32(x)) - std::erf(double(x))));
  CHECK(worst < 5e-7);
  CHECK(std::isnan(math::erf_f32(std::numeric_limits<float>::quiet_NaN())));
  CHECK(math::erf_f32(std::numeric_limits<float>::infinity()) == 1.0f);
  CHECK(math::erf_f32(-std::numeric_limits<float>::infinity()) == -1.0f);
  CHECK(math::erf_f32(0.0f) == 0.0f);
  // gelu in f32 against the f64 definition.
  const Tensor x = mul(arange(-4000.0, 4000.0, 1.0, {DType::f32}), 1e-3);
  const Tensor exact = gelu(to_dtype(x, DType::f64));
  CHECK(amax(abs(sub(to_dtype(gelu(x), DType::f64), exact))).item<double>() < 1e-6);
}

TEST_CASE("elementwise: derivative kernels and geglu_backward write into a given output, which may be an input") {
  const Tensor x = from_vector<double>({-1.5, -0.2, 0.0, 0.3, 2.0, 4.0}, {2, 3});
  const Tensor gy = from_vector<double>({1, 2, 3, 4, 5, 6}, {2, 3});
  const auto want = gelu_backward(gy, x).to_vector<double>();
  const Tensor out = clone(gy);
  CHECK(gelu_backward(out, x, out).storage() == out.storage());  // in place over the incoming gradient
  CHECK(out.to_vector<double>() == want);
  CHECK_THROWS_WITH_AS(gelu_backward(gy, x, zeros({3, 2}, {DType::f64})),
                       Contains("[gelu_backward] out f64(3, 2) on cpu must be a contiguous f64 tensor of shape (2, 3) on cpu"), Error);
  CHECK_THROWS_WITH_AS(leaky_relu_backward(gy, x, 0.0, zeros({2, 3}, {DType::f32})),
                       Contains("[leaky_relu_backward] out f32(2, 3) on cpu must be a contiguous f64 tensor of shape (2, 3)"), Error);
  CHECK_THROWS_WITH_AS(silu_backward(gy, x, transpose(zeros({3, 2}, {DType::f64}), 0, 1)),
                       Contains("[silu_backward] out"), Error);

  // geglu: d h over h, d mult over gy, the same numbers as fresh buffers.
  const Tensor h = from_vector<double>({0.5, -1.0, 2.0, 0.1, 1.5, -0.3, -2.0, 0.7, 0.2, 1.1, -0.4, 0.9}, {2, 6});
  const Tensor mult = from_vector<double>({1.0, 0.5, 2.0}, {3});
  const auto fresh = geglu_backward(gy, h, mult, true, true);
  const Tensor h_buf = clone(h), gy_buf = clone(gy);
  const auto reused = geglu_backward(gy_buf, h_buf, mult, true, true, h_buf, gy_buf);
  CHECK(reused[0].storage() == h_buf.storage());
  CHECK(reused[1].storage() == gy_buf.storage());
  CHECK(reused[0].to_vector<double>() == fresh[0].to_vector<double>());
  CHECK(reused[1].to_vector<double>() == fresh[1].to_vector<double>());
  CHECK_THROWS_WITH_AS(geglu_backward(gy, h, mult, true, true, zeros({2, 3}, {DType::f64})),
                       Contains("[geglu_backward] dh_out f64(2, 3) on cpu must be a contiguous f64 tensor of shape (2, 6)"),
                       Error);
  CHECK_THROWS_WITH_AS(geglu_backward(gy, h, mult, false, true, Tensor{}, zeros({2, 6}, {DType::f64})),
                       Contains("[geglu_backward] dmult_out"), Error);
}
