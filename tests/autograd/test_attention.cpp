// The fused causal attention (ag::causal_attention, core/ops/attention.h) against the naive
// composition matmul -> scale -> causal mask -> softmax -> matmul, in f32 and f64, forward and
// gradients; the state kept for backward (no [B, H, T, T] tensor); bad input. The f64
// finite-difference check is the catalogue's entry (test_gradcheck_catalogue.cpp); the CUDA
// kernel against this CPU one is tests/core/test_attention_cuda.cpp.
#include <doctest/doctest.h>
#include <omp.h>

#include <cmath>
#include <cstring>
#include <vector>

#include "autograd/autograd.h"
#include "core/ops/attention.h"
#include "tests/autograd/expect_close.h"

using namespace moegrad;
namespace core = moegrad::core;
using ag::Variable;
using core::DType;
using core::Shape;
using core::Tensor;
using doctest::Contains;
using fused_test::expect_close;

namespace {

// 0 where key s <= query t, -inf after: [T, T].
Tensor causal_mask(std::int64_t T, DType dt) {
  std::vector<double> m(static_cast<std::size_t>(T * T));
  for (std::int64_t t = 0; t < T; ++t)
    for (std::int64_t s = 0; s < T; ++s) m[static_cast<std::size_t>(t * T + s)] = s <= t ? 0.0 : -INFINITY;
  return core::to_dtype(core::from_vector<double>(m, {T, T}), dt);
}

Variable naive_attention(const Variable& q, const Variable& k, const Variable& v, double scale) {
  Variable s = ag::mul(ag::matmul(q, ag::transpose(k, -1, -2)), scale);
  s = ag::add(s, ag::constant(causal_mask(q.size(2), q.dtype())));
  return ag::matmul(ag::softmax(s, -1), v);
}

// Forward and the gradients of sum(w * out) through both paths.
void compare_with_naive(const Shape& shape, DType dt, double scale, double atol, double rtol, double spread = 1.0) {
  core::Generator gen(7);
  auto leaf = [&] { return Variable(core::to_dtype(core::mul(core::randn(shape, {}, &gen), spread), dt), true); };
  const Variable q = leaf(), k = leaf(), v = leaf();
  const Tensor w = core::to_dtype(core::randn(shape, {}, &gen), dt);
  const Variable fused = ag::causal_attention(q, k, v, scale);
  ag::sum(ag::mul(fused, ag::constant(w))).backward();
  const Tensor dq = q.grad(), dk = k.grad(), dv = v.grad();
  q.zero_grad();
  k.zero_grad();
  v.zero_grad();
  const Variable naive = naive_attention(q, k, v, scale);
  ag::sum(ag::mul(naive, ag::constant(w))).backward();
  expect_close("out", fused.value(), naive.value(), atol, rtol);
  expect_close("dq", dq, q.grad(), atol, rtol);
  expect_close("dk", dk, k.grad(), atol, rtol);
  expect_close("dv", dv, v.grad(), atol, rtol);
}

}  // namespace

TEST_CASE("causal_attention matches matmul + mask + softmax + matmul") {
  SUBCASE("f32, T = 130 (three 64-row blocks, the last partial)") {
    compare_with_naive({2, 3, 130, 16}, DType::f32, 0.25, 2e-5, 2e-4);
  }
  SUBCASE("f32, seq 256, head dim 64") { compare_with_naive({1, 2, 256, 64}, DType::f32, 0.125, 2e-5, 2e-4); }
  SUBCASE("f32, large scores (softmax near one-hot)") {
    compare_with_naive({1, 2, 70, 8}, DType::f32, 1.0, 1e-4, 1e-3, 4.0);
  }
  SUBCASE("f64, T = 67") { compare_with_naive({2, 1, 67, 5}, DType::f64, 0.4, 1e-12, 1e-10); }
  // Few heads: the CPU backward splits each head's query blocks into chunks whose dK, dV are
  // summed afterwards (core/cpu/attention.cpp), here 11 blocks in up to 11 chunks, and 5 in 5.
  SUBCASE("f32, B H = 1, T = 700") { compare_with_naive({1, 1, 700, 32}, DType::f32, 0.18, 2e-5, 2e-4); }
  SUBCASE("f64, B H = 2, T = 300") { compare_with_naive({2, 1, 300, 8}, DType::f64, 0.35, 1e-12, 1e-10); }
}

namespace {
// Bitwise equality of two tensors of one shape and dtype.
bool same_bits(const Tensor& a, const Tensor& b) {
  const Tensor x = core::contiguous(a), y = core::contiguous(b);
  return x.shape() == y.shape() && x.dtype() == y.dtype() &&
         std::memcmp(x.raw_data(), y.raw_data(), static_cast<std::size_t>(x.numel()) * core::dtype_size(x.dtype())) == 0;
}

// The forward's out and the three gradients under `threads` OpenMP threads.
std::vector<Tensor> attention_under(int threads, const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& g) {
  const int before = omp_get_max_threads();
  omp_set_num_threads(threads);
  const core::AttentionForward f = core::causal_attention_forward(q, k, v, 0.2);
  const core::AttentionGrads d = core::causal_attention_backward(q, k, v, f.out, f.lse, g, 0.2);
  omp_set_num_threads(before);
  return {f.out, f.lse, d.dq, d.dk, d.dv};
}
}  // namespace

TEST_CASE("causal_attention gives the same bits for 1, 2 and 3 threads") {
  // One head of 9 blocks (chunked backward), and 36 heads of 2 blocks (a head per task).
  for (const Shape& shape : {Shape{1, 1, 530, 16}, Shape{6, 6, 100, 8}}) {
    CAPTURE(core::shape_str(shape));
    core::Generator gen(5);
    const Tensor q = core::randn(shape, {}, &gen), k = core::randn(shape, {}, &gen), v = core::randn(shape, {}, &gen),
                 g = core::randn(shape, {}, &gen);
    const std::vector<Tensor> one = attention_under(1, q, k, v, g);
    for (int threads : {2, 3}) {
      CAPTURE(threads);
      const std::vector<Tensor> many = attention_under(threads, q, k, v, g);
      for (std::size_t i = 0; i < one.size(); ++i) CHECK(same_bits(one[i], many[i]));
    }
  }
}

TEST_CASE("causal_attention reads permuted [B, T, H, D] operands in place") {
  // The model's layout: projections [B, T, H, D] viewed as [B, H, T, D] (rows H D apart).
  const std::int64_t B = 2, T = 150, H = 3, D = 16;
  core::Generator gen(9);
  auto heads = [&] { return core::permute(core::randn({B, T, H, D}, {}, &gen), {0, 2, 1, 3}); };
  const Tensor q = heads(), k = heads(), v = heads(), g = heads();
  REQUIRE_FALSE(q.is_contiguous());
  const Tensor qc = core::contiguous(q), kc = core::contiguous(k), vc = core::contiguous(v), gc = core::contiguous(g);
  // Peak bytes allocated by forward + backward, beyond what exists before.
  const auto peak_of = [](const Tensor& a, const Tensor& b, const Tensor& c, const Tensor& go) {
    const auto base = core::memory_stats(core::Device::cpu()).allocated;
    core::reset_peak_memory(core::Device::cpu());
    const core::AttentionForward fw = core::causal_attention_forward(a, b, c, 0.25);
    const core::AttentionGrads bw = core::causal_attention_backward(a, b, c, fw.out, fw.lse, go, 0.25);
    return std::pair{static_cast<std::int64_t>(core::memory_stats(core::Device::cpu()).peak_allocated - base),
                     std::vector<Tensor>{fw.out, fw.lse, bw.dq, bw.dk, bw.dv}};
  };
  const auto [peak_contiguous, want] = peak_of(qc, kc, vc, gc);
  const auto [peak, got] = peak_of(q, k, v, g);
  // No contiguous copy of q, k, v or g: each would add an operand's bytes.
  MESSAGE("peak ", peak, " bytes (contiguous operands: ", peak_contiguous, "); one operand = ", B * H * T * D * 4);
  CHECK(peak <= peak_contiguous + 4096);
  const char* names[] = {"out", "lse", "dq", "dk", "dv"};
  for (std::size_t i = 0; i < got.size(); ++i) expect_close(names[i], got[i], want[i], 1e-6, 1e-6);
}

TEST_CASE("causal_attention: the first row copies v[0], lse is each row's log-sum-exp") {
  core::Generator gen(3);
  const Tensor q = core::randn({1, 1, 9, 4}, {}, &gen), k = core::randn({1, 1, 9, 4}, {}, &gen),
               v = core::randn({1, 1, 9, 4}, {}, &gen);
  const core::AttentionForward f = core::causal_attention_forward(q, k, v, 0.5);
  expect_close("row 0", core::select(core::select(core::select(f.out, 0, 0), 0, 0), 0, 0),
               core::select(core::select(core::select(v, 0, 0), 0, 0), 0, 0), 1e-6, 0);
  // lse[t] = logsumexp over s <= t of scale q_t . k_s.
  const Tensor s = core::add(core::mul(core::matmul(q, k, false, true), 0.5), causal_mask(9, DType::f32));
  expect_close("lse", f.lse, core::logsumexp(s, {-1}), 1e-5, 1e-5);
}

TEST_CASE("causal_attention keeps no [B, H, T, T] tensor for backward") {
  const Shape shape{2, 4, 256, 64};
  const std::int64_t B = 2, H = 4, T = 256, D = 64;
  core::Generator gen(11);
  const Variable q(core::randn(shape, {}, &gen), true), k(core::randn(shape, {}, &gen), true),
      v(core::randn(shape, {}, &gen), true);
  const auto before = core::memory_stats(core::Device::cpu()).allocated;
  Variable out = ag::causal_attention(q, k, v, 0.125);
  REQUIRE(out.requires_grad());
  const auto held = core::memory_stats(core::Device::cpu()).allocated - before;
  // What the graph holds beyond its inputs: out [B, H, T, D] and lse [B, H, T], in f32.
  const std::int64_t saved = (B * H * T * D + B * H * T) * 4, probabilities = B * H * T * T * 4;
  MESSAGE("held after forward: ", held, " bytes; out + lse = ", saved, "; one [B, H, T, T] f32 = ", probabilities);
  CHECK(static_cast<std::int64_t>(held) <= saved + 4096);  // allocator rounding
  ag::sum(out).backward();
  CHECK(q.grad().shape() == shape);
}

TEST_CASE("causal_attention: no graph without grad") {
  const Variable q(core::zeros({1, 1, 3, 2}), true);
  {
    ag::NoGradGuard guard;
    CHECK_FALSE(ag::causal_attention(q, q, q, 1.0).requires_grad());
  }
  const Variable c(core::zeros({1, 1, 3, 2}));
  const Variable out = ag::causal_attention(c, c, c, 1.0);
  CHECK_FALSE(out.requires_grad());
  // Zero scores: a uniform average of the visible rows of v (all zero here).
  CHECK(core::sum(core::abs(out.value())).item<float>() == 0.0f);
}

TEST_CASE("causal_attention: empty sizes") {
  const Variable e(core::zeros({2, 0, 5, 4}), true);
  CHECK(ag::causal_attention(e, e, e, 1.0).shape() == Shape{2, 0, 5, 4});
  const core::AttentionForward f = core::causal_attention_forward(core::zeros({1, 1, 3, 0}), core::zeros({1, 1, 3, 0}),
                                                                  core::zeros({1, 1, 3, 0}), 1.0);
  expect_close("lse with D = 0", f.lse, core::from_vector<float>({0.0f, std::log(2.0f), std::log(3.0f)}, {1, 1, 3}),
               1e-6, 1e-6);
}

TEST_CASE("causal_attention: bad input is one line naming the op and the shapes") {
  const Variable x(core::zeros({2, 3, 5, 4})), y(core::zeros({2, 3, 6, 4}));
  CHECK_THROWS_WITH_AS(ag::causal_attention(Variable(core::zeros({3, 5, 4})), x, x, 1.0),
                       Contains("[causal_attention] q, k, v must be [B, H, T, D], got q f32(3, 5, 4)"), Error);
  CHECK_THROWS_WITH_AS(ag::causal_attention(x, y, x, 1.0),
                       Contains("[causal_attention] q, k, v must have one shape [B, H, T, D], got q f32(2, 3, 5, 4), "
                                "k f32(2, 3, 6, 4)"),
                       Error);
  CHECK_THROWS_WITH_AS(ag::causal_attention(x, x, Variable(core::zeros({2, 3, 5, 8})), 1.0),
                       Contains("v f32(2, 3, 5, 8)"), Error);
  CHECK_THROWS_WITH_AS(ag::causal_attention(x, Variable(core::zeros({2, 3, 5, 4}, {DType::f64})), x, 1.0),
                       Contains("[causal_attention] dtype mismatch: f32(2, 3, 5, 4) vs f64(2, 3, 5, 4)"), Error);
  const Variable xi(core::zeros({2, 3, 5, 4}, {DType::i64}));
  CHECK_THROWS_WITH_AS(ag::causal_attention(xi, xi, xi, 1.0), Contains("[causal_attention] needs f32 or f64, got q i64(2, 3, 5, 4)"),
                       Error);
  CHECK_THROWS_WITH_AS(ag::causal_attention(x, x, x, NAN), Contains("[causal_attention] scale must be finite, got nan"), Error);
  CHECK_THROWS_WITH_AS(ag::causal_attention(Variable(), x, x, 1.0), Contains("[causal_attention]"), Error);
  // The backward entry checks the saved state too.
  CHECK_THROWS_WITH_AS(core::causal_attention_backward(x.value(), x.value(), x.value(), x.value(), core::zeros({2, 3, 4}),
                                                       x.value(), 1.0),
                       Contains("[causal_attention] lse must be [B, H, T] (2, 3, 5)"), Error);
}
