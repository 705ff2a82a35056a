// bf16 (issue 16): the f32 <-> bf16 conversion (round to nearest even, NaN, inf, overflow,
// subnormals, every bf16 value round-tripping), the bf16 -> f32 GEMMs against an f64 reference
// (both CPU paths: oneDNN's bf16 GEMM and the widening fallback), the precision switch in matmul
// and the grouped expert GEMMs, and bad input as one line.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "core/cpu/gemm_engine.h"
#include "core/kernels/bf16_math.h"
#include "core/ops.h"

using namespace moegrad;
using namespace moegrad::core;
using doctest::Contains;

namespace {

float from_bits(std::uint32_t u) {
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

std::uint16_t rne(float f) { return math::bf16_bits_rne(f); }

constexpr double kBf16Eps = 1.0 / 256;  // 2^-8: bf16's unit roundoff (8 significant bits)

// Random f32 values spread over a few binades, both signs.
Tensor random_f32(const Shape& shape, std::uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(-2.0f, 2.0f);
  std::vector<float> v(static_cast<std::size_t>(shape_numel(shape)));
  for (float& x : v) x = u(rng) * std::ldexp(1.0f, static_cast<int>(rng() % 5) - 2);
  return from_vector(v, shape);
}

// C = op(A) op(B) in double on the host, for [m, k] / [k, n] matrices given as f64 tensors.
std::vector<double> reference(const Tensor& a, const Tensor& b) {
  const std::int64_t m = a.size(0), k = a.size(1), n = b.size(1);
  const auto va = contiguous(a).to_vector<double>(), vb = contiguous(b).to_vector<double>();
  std::vector<double> c(static_cast<std::size_t>(m * n), 0.0);
  for (std::int64_t i = 0; i < m; ++i)
    for (std::int64_t p = 0; p < k; ++p)
      for (std::int64_t j = 0; j < n; ++j) c[i * n + j] += va[i * k + p] * vb[p * n + j];
  return c;
}

// sum_p |a_ip| |b_pj| per element: the scale of the rounding bounds.
std::vector<double> abs_reference(const Tensor& a, const Tensor& b) { return reference(abs(a), abs(b)); }

// got (f32 [m, n]) against the f64 product of the f32 operands a, b: each operand rounded to
// bf16 (relative error <= 2^-8 each) and the sums in f32 (<= k 2^-24):
// |got - exact| <= (2 * 2^-8 + 2^-16 + k 2^-24) sum |a||b|.
void check_bf16_product(const Tensor& got, const Tensor& a, const Tensor& b) {
  REQUIRE(got.dtype() == DType::f32);
  const Tensor a64 = to_dtype(a, DType::f64), b64 = to_dtype(b, DType::f64);
  const auto want = reference(a64, b64), scale = abs_reference(a64, b64);
  const auto g = contiguous(got).to_vector<double>();
  REQUIRE(g.size() == want.size());
  const double k = static_cast<double>(a.size(1));
  const double rel = 2 * kBf16Eps + kBf16Eps * kBf16Eps + k * std::ldexp(1.0, -24);
  int bad = 0;
  double worst = 0;
  for (std::size_t i = 0; i < g.size(); ++i) {
    const double err = std::abs(g[i] - want[i]);
    worst = std::max(worst, err / std::max(scale[i], 1e-30));
    if (err > rel * scale[i] && bad++ < 5) FAIL_CHECK("element ", i, ": ", g[i], " vs ", want[i], " (bound ", rel * scale[i], ")");
  }
  CHECK(bad == 0);
  CHECK(worst > 0);  // the operands were rounded: not an exact f32 product
}

// Runs body once per CPU GEMM engine of this build (openblas: the bf16 operands widened to f32;
// onednn: its bf16 GEMM where the CPU has AVX512_BF16), restoring the automatic choice.
template <class Body>
void for_each_engine(Body body) {
  for (const std::string& name : cpu::gemm_engine_names()) {
    CAPTURE(name);
    cpu::set_gemm_engine(name);
    MESSAGE("bf16 path: ", cpu::bf16_gemm_summary());
    body();
  }
  cpu::set_gemm_engine("auto");
}

}  // namespace

TEST_CASE("bf16: f32 -> bf16 rounds to nearest, ties to even") {
  CHECK(rne(1.0f) == 0x3f80);
  CHECK(rne(from_bits(0x3f808000)) == 0x3f80);  // 1 + 2^-8: a tie, to the even 1.0
  CHECK(rne(from_bits(0x3f818000)) == 0x3f82);  // 1 + 3 2^-8: a tie, to the even 1 + 2^-6
  CHECK(rne(from_bits(0x3f808001)) == 0x3f81);  // just above the tie: up
  CHECK(rne(from_bits(0x3f807fff)) == 0x3f80);  // just below: down
  CHECK(rne(from_bits(0xbf818000)) == 0xbf82);  // the sign does not matter
  CHECK(rne(-0.0f) == 0x8000);
  CHECK(rne(0.0f) == 0x0000);
}

TEST_CASE("bf16: NaN stays a quiet NaN, inf stays inf, overflow rounds to inf") {
  const float inf = std::numeric_limits<float>::infinity();
  CHECK(rne(inf) == 0x7f80);
  CHECK(rne(-inf) == 0xff80);
  CHECK(rne(std::numeric_limits<float>::quiet_NaN()) == 0x7fc0);
  CHECK(rne(from_bits(0x7f800001)) == 0x7fc0);  // signalling NaN, low payload: quiet, not inf
  CHECK(rne(from_bits(0xff800001)) == 0xffc0);
  CHECK(rne(from_bits(0x7fffffff)) == 0x7fff);
  CHECK(std::isnan(math::bf16_bits_to_float(rne(from_bits(0x7f800001)))));
  CHECK(rne(std::numeric_limits<float>::max()) == 0x7f80);  // past bf16's largest by more than half an ulp
  CHECK(rne(from_bits(0x7f7f0000)) == 0x7f7f);               // bf16's largest finite
  CHECK(rne(from_bits(0x7f7f7fff)) == 0x7f7f);               // below the midpoint to inf
  CHECK(rne(from_bits(0x7f7f8000)) == 0x7f80);               // the midpoint: to even (inf)
}

TEST_CASE("bf16: subnormals round like normals") {
  CHECK(rne(from_bits(0x00000001)) == 0x0000);  // f32's smallest subnormal: to zero
  CHECK(rne(from_bits(0x00010000)) == 0x0001);  // bf16's smallest subnormal: exact
  CHECK(rne(from_bits(0x00008000)) == 0x0000);  // half of it: a tie, to even (zero)
  CHECK(rne(from_bits(0x00018000)) == 0x0002);  // 1.5 of it: a tie, to even
  CHECK(rne(from_bits(0x00008001)) == 0x0001);
  CHECK(rne(from_bits(0x007fffff)) == 0x0080);  // the largest subnormal carries into the smallest normal
  CHECK(math::bf16_bits_to_float(0x0001) == from_bits(0x00010000));
}

TEST_CASE("bf16: every bf16 value round-trips through f32, through the scalar functions and tensors") {
  std::vector<float> values;
  for (std::uint32_t bits = 0; bits < 0x10000; ++bits) values.push_back(math::bf16_bits_to_float(static_cast<std::uint16_t>(bits)));
  int bad = 0;
  for (std::uint32_t bits = 0; bits < 0x10000; ++bits) {
    const float f = values[bits];
    const std::uint16_t back = rne(f);
    const bool ok = std::isnan(f) ? (back | 0x0040) == (bits | 0x0040) : back == bits;
    if (!ok && bad++ < 5) FAIL_CHECK("bits ", bits, " -> ", back);
  }
  CHECK(bad == 0);
  // The tensor conversion (copy_ / to_dtype, run_map over the same functor) agrees with the scalar one.
  const Tensor t = from_vector(values, {256, 256});
  const Tensor b = to_dtype(t, DType::bf16);
  CHECK(b.dtype() == DType::bf16);
  CHECK(dtype_size(DType::bf16) == 2);
  const Bf16* p = b.data<Bf16>();
  for (std::size_t i = 0; i < values.size(); ++i)
    if (p[i].bits != rne(values[i]) && bad++ < 5) FAIL_CHECK("tensor element ", i);
  CHECK(bad == 0);
  const auto back = to_dtype(b, DType::f32).to_vector<float>();
  for (std::size_t i = 0; i < values.size(); ++i)
    if (!(back[i] == values[i] || (std::isnan(back[i]) && std::isnan(values[i]))) && bad++ < 5) FAIL_CHECK("f32 element ", i);
  CHECK(bad == 0);
}

TEST_CASE("bf16: the vectorised contiguous conversion equals the scalar rule on every kind of f32") {
  // Random bit patterns (normals, subnormals, NaNs with any payload, infinities, ties), some blocks
  // of 32 without subnormals (the AVX512_BF16 path where the CPU has it) and some with one.
  std::mt19937 rng(5);
  std::vector<float> values;
  for (int i = 0; i < 100000; ++i) {
    std::uint32_t u = rng();
    switch (i % 7) {
      case 0: u &= 0x807fffffu; break;                    // subnormal (or zero)
      case 1: u = (u & 0xffff0000u) | 0x8000u; break;     // an exact tie
      case 2: u |= 0x7f800000u; break;                    // NaN or inf
      default: break;
    }
    if ((i / 64) % 2 == 0 && (u & 0x7f800000u) == 0) u |= 0x00800000u;  // half the blocks: no subnormal
    values.push_back(from_bits(u));
  }
  const Tensor b = to_dtype(from_vector(values, {static_cast<std::int64_t>(values.size())}), DType::bf16);
  const Bf16* p = b.data<Bf16>();
  int bad = 0;
  for (std::size_t i = 0; i < values.size(); ++i)
    if (p[i].bits != rne(values[i]) && bad++ < 5) FAIL_CHECK("element ", i, ": ", p[i].bits, " vs ", rne(values[i]));
  CHECK(bad == 0);
}

TEST_CASE("bf16: strided and broadcast conversions, contiguous and to_vector") {
  const Tensor x = random_f32({5, 7}, 3);
  const Tensor xt = transpose(x, 0, 1);  // strided source
  const Tensor bt = to_dtype(xt, DType::bf16);
  CHECK(bt.is_contiguous());
  const auto want = xt.to_vector<float>();
  const auto got = bt.to_vector<float>();  // read through f32
  REQUIRE(got.size() == want.size());
  for (std::size_t i = 0; i < got.size(); ++i) CHECK(got[i] == math::bf16_bits_to_float(rne(want[i])));
  // bf16 -> bf16 copies: contiguous of a transposed bf16 view, a broadcast copy_.
  const Tensor b = to_dtype(x, DType::bf16);
  const Tensor c = contiguous(transpose(b, 0, 1));
  CHECK(c.to_vector<float>() == got);
  Tensor rows = empty({3, 7}, {DType::bf16});
  copy_(rows, narrow(b, 0, 1, 1));
  const auto r = rows.to_vector<float>();
  const auto row1 = narrow(to_dtype(b, DType::f32), 0, 1, 1).to_vector<float>();
  for (int i = 0; i < 3; ++i)
    for (int j = 0; j < 7; ++j) CHECK(r[i * 7 + j] == row1[j]);
}

TEST_CASE("bf16: ops without bf16 support say so in one line") {
  const Tensor b = to_dtype(ones({2, 3}), DType::bf16);
  CHECK_THROWS_WITH_AS(exp(b), Contains("[exp] dtype bf16 not supported (needs f32 or f64)"), Error);
  CHECK_THROWS_WITH_AS(add(b, b), Contains("[add] dtype bf16 not supported"), Error);
  CHECK_THROWS_WITH_AS(sum(b), Contains("bf16"), Error);
  CHECK_THROWS_WITH_AS(to_dtype(b, DType::i64), Contains("[copy_] bf16 converts only from and to f32, not bf16 to i64"),
                       Error);
  CHECK_THROWS_WITH_AS(to_dtype(zeros({2}, {DType::f64}), DType::bf16),
                       Contains("[copy_] bf16 converts only from and to f32, not f64 to bf16"), Error);
  CHECK_THROWS_WITH_AS(fill_(b, 1.0), Contains("[fill_] dtype bf16 not supported"), Error);
  CHECK_THROWS_WITH_AS(matmul(b, ones({3, 2})), Contains("[matmul] dtype mismatch"), Error);
  CHECK_THROWS_WITH_AS(parse_precision("fp16", "--precision"),
                       Contains("[--precision] unknown precision 'fp16' (expected fp32 or bf16)"), Error);
}

TEST_CASE("bf16: matmul of bf16 operands against an f64 reference, every layout and engine") {
  for_each_engine([] {
    for (const auto& [m, k, n] : {std::tuple{1, 1, 1}, {7, 13, 5}, {64, 300, 48}, {200, 512, 96}}) {
      CAPTURE(m);
      CAPTURE(k);
      CAPTURE(n);
      const Tensor a = random_f32({m, k}, 11), b = random_f32({k, n}, 12);
      const Tensor a16 = to_dtype(a, DType::bf16), b16 = to_dtype(b, DType::bf16);
      check_bf16_product(matmul(a16, b16), a, b);
      // Transposed operands read in place (stored [k, m] and [n, k]).
      const Tensor at16 = to_dtype(contiguous(transpose(a, 0, 1)), DType::bf16);
      const Tensor bt16 = to_dtype(contiguous(transpose(b, 0, 1)), DType::bf16);
      check_bf16_product(matmul(at16, bt16, true, true), a, b);
      // f32 operands under Precision::bf16: the same kernel on the same rounded values, bit for bit.
      const GemmPrecisionScope bf16(Precision::bf16);
      CHECK(matmul(a, b).to_vector<float>() == matmul(a16, b16).to_vector<float>());
      CHECK(matmul(transpose(a, 0, 1), b, true, false).to_vector<float>() == matmul(a16, b16).to_vector<float>());
    }
  });
}

TEST_CASE("bf16: batched, broadcast and accumulating products under Precision::bf16") {
  const Tensor a = random_f32({3, 9, 40}, 21), b = random_f32({40, 6}, 22);
  const GemmPrecisionScope bf16(Precision::bf16);
  CHECK(gemm_precision() == Precision::bf16);
  const Tensor c = matmul(a, b);  // b broadcast over the batch
  CHECK(c.dtype() == DType::f32);
  for (int i = 0; i < 3; ++i) check_bf16_product(select(c, 0, i), select(a, 0, i), b);
  const Tensor bb = expand(unsqueeze(b, 0), {3, 40, 6});  // a stride-0 batch dim
  CHECK(matmul(a, bb).to_vector<float>() == c.to_vector<float>());
  // matmul_into: out = 0.5 out + 2 a b, out f32.
  Tensor out = ones({9, 6});
  matmul_into(out, select(a, 0, 1), b, false, false, 2.0, 0.5);
  const auto o = out.to_vector<float>(), p = select(c, 0, 1).to_vector<float>();
  for (std::size_t i = 0; i < o.size(); ++i) CHECK(o[i] == doctest::Approx(0.5 + 2 * p[i]).epsilon(1e-6));
  CHECK_THROWS_WITH_AS(matmul_into(zeros({9, 6}, {DType::f64}), select(a, 0, 1), b, false, false),
                       Contains("[matmul] out is f64(9, 6) but the product"), Error);
}

TEST_CASE("bf16: f64 products ignore the precision switch, and the scope restores it") {
  const Tensor a = to_dtype(random_f32({8, 16}, 31), DType::f64), b = to_dtype(random_f32({16, 4}, 32), DType::f64);
  const auto fp = matmul(a, b).to_vector<double>();
  CHECK(gemm_precision() == Precision::fp32);
  {
    const GemmPrecisionScope bf16(Precision::bf16);
    CHECK(matmul(a, b).dtype() == DType::f64);
    CHECK(matmul(a, b).to_vector<double>() == fp);
    {
      const GemmPrecisionScope fp32(Precision::fp32);
      CHECK(gemm_precision() == Precision::fp32);
    }
    CHECK(gemm_precision() == Precision::bf16);
  }
  CHECK(gemm_precision() == Precision::fp32);
}

TEST_CASE("bf16: grouped expert GEMMs and their weight gradient against an f64 reference") {
  for_each_engine([] {
    // 4 experts, one without rows; x [R, a], w [E, b, a] (PyTorch layout, transposed) and [E, a, b].
    const std::vector<std::int64_t> off{0, 5, 5, 37, 60};
    const std::int64_t R = 60, a = 24, b = 20, E = 4;
    const Tensor offsets = from_vector(off, {E + 1});
    const Tensor x = random_f32({R, a}, 41), w = random_f32({E, b, a}, 42), gy = random_f32({R, b}, 43);
    const Tensor bias = random_f32({E, b}, 44);
    const GemmPrecisionScope bf16(Precision::bf16);
    const Tensor y = grouped_matmul(x, w, offsets, /*transpose_w=*/true);
    const Tensor yb = grouped_matmul(x, w, offsets, true, bias);
    const Tensor dw = grouped_matmul_weight_grad(x, gy, offsets, /*transpose_w=*/true);  // [E, b, a]
    CHECK(y.dtype() == DType::f32);
    CHECK(dw.dtype() == DType::f32);
    for (std::int64_t e = 0; e < E; ++e) {
      CAPTURE(e);
      const std::int64_t rows = off[e + 1] - off[e];
      if (rows == 0) {
        CHECK(amax(abs(select(dw, 0, e))).item<double>() == 0.0);
        continue;
      }
      const Tensor xe = narrow(x, 0, off[e], rows), ge = narrow(gy, 0, off[e], rows);
      const Tensor we = contiguous(transpose(select(w, 0, e), 0, 1));  // [a, b]
      check_bf16_product(narrow(y, 0, off[e], rows), xe, we);
      const GemmPrecisionScope fp32(Precision::fp32);  // the bias add, checked in f32
      const Tensor with_bias = add(narrow(y, 0, off[e], rows), narrow(bias, 0, e, 1));
      const auto wb = with_bias.to_vector<float>(), gb = narrow(yb, 0, off[e], rows).to_vector<float>();
      for (std::size_t i = 0; i < wb.size(); ++i) CHECK(gb[i] == doctest::Approx(wb[i]).epsilon(1e-5).scale(1.0));
      check_bf16_product(select(dw, 0, e), contiguous(transpose(ge, 0, 1)), xe);  // dW_e = g_e^T x_e [b, a]
    }
    // bf16 operands directly give the same, bit for bit.
    const Tensor y16 = grouped_matmul(to_dtype(x, DType::bf16), to_dtype(w, DType::bf16), offsets, true);
    CHECK(y16.to_vector<float>() == y.to_vector<float>());
    CHECK_THROWS_WITH_AS(grouped_matmul(x, w, offsets, true, to_dtype(bias, DType::f64)),
                         Contains("[grouped_matmul] bias must be f32 (the product's dtype), got f64(4, 20)"), Error);
  });
}

TEST_CASE("bf16: the two CPU bf16 GEMM paths agree to f32 summation order") {
  const auto names = cpu::gemm_engine_names();
  if (names.size() < 2) {
    MESSAGE("skipped: one GEMM engine in this build");
    return;
  }
  const Tensor a = to_dtype(random_f32({96, 700}, 51), DType::bf16), b = to_dtype(random_f32({700, 80}, 52), DType::bf16);
  std::vector<std::vector<float>> results;
  for (const std::string& name : names) {
    cpu::set_gemm_engine(name);
    results.push_back(matmul(a, b).to_vector<float>());
  }
  cpu::set_gemm_engine("auto");
  const Tensor a32 = to_dtype(a, DType::f32), b32 = to_dtype(b, DType::f32);
  const auto scale = abs_reference(to_dtype(a32, DType::f64), to_dtype(b32, DType::f64));
  for (std::size_t i = 0; i < results[0].size(); ++i)
    CHECK(std::abs(results[0][i] - results[1][i]) <= 2 * 700 * std::ldexp(1.0, -24) * scale[i]);
}
