// The CUDA device against the CPU oracle for what the gradient-check catalogue does not cover:
// the runtime (allocator, copies, deferred kernel errors), every dtype of the elementwise and
// copy kernels, the Philox draws, cuBLAS matmul layouts, and non-differentiable reductions.
// Every case skips itself where no GPU is present.
#include <doctest/doctest.h>

#include <cstdint>
#include <limits>
#include <vector>

#include "core/memory.h"
#include "core/ops.h"
#include "tests/cuda/cuda_test.h"

using namespace moegrad;
using namespace moegrad::core;
using cuda_test::expect_close;
using cuda_test::gpu;
using doctest::Contains;

namespace {
Tensor randu(const Shape& s, std::uint64_t seed, DType dtype = DType::f32) {
  Generator g(seed);
  return uniform(s, -2.0, 2.0, {dtype}, &g);
}
}  // namespace

TEST_CASE("cuda runtime: copies round trip every dtype, views included") {
  SKIP_WITHOUT_CUDA();
  const Tensor f = randu({5, 7}, 1, DType::f64);
  for (DType d : {DType::f32, DType::f64, DType::i64, DType::b8, DType::u8}) {
    const Tensor x = to_dtype(mul(f, 3.0), d);
    const Tensor back = to_device(to_device(x, gpu()), Device::cpu());
    expect_close(dtype_name(d), x, back);
    const Tensor view = transpose(slice(x, 1, 1, 7, 2), 0, 1);  // strided source on the host
    expect_close("view", contiguous(view), to_device(to_device(view, gpu()), Device::cpu()));
    const Tensor gview = transpose(slice(to_device(x, gpu()), 1, 1, 7, 2), 0, 1);  // strided on the GPU
    expect_close("gpu view", contiguous(view), to_device(gview, Device::cpu()));
  }
}

TEST_CASE("cuda runtime: the caching allocator reuses blocks and counts memory") {
  SKIP_WITHOUT_CUDA();
  synchronize(gpu());
  empty_cache(gpu());
  const auto before = memory_stats(gpu());
  {
    Tensor a = empty({1000, 1000}, {DType::f32, gpu()});
    const auto during = memory_stats(gpu());
    CHECK(during.allocated >= before.allocated + 4000000);
    CHECK(during.peak_allocated >= during.allocated);
  }
  CHECK(memory_stats(gpu()).allocated == before.allocated);
  CHECK(memory_stats(gpu()).reserved >= before.reserved + 4000000);  // kept in the cache
  const auto misses = memory_stats(gpu()).cache_misses;
  { Tensor b = empty({1000, 1000}, {DType::f32, gpu()}); }
  CHECK(memory_stats(gpu()).cache_misses == misses);  // served from the cache
  empty_cache(gpu());
  CHECK(memory_stats(gpu()).reserved == memory_stats(gpu()).allocated);
  reset_peak_memory(gpu());
  CHECK(memory_stats(gpu()).peak_allocated == memory_stats(gpu()).allocated);
}

TEST_CASE("cuda runtime: bad indices found by a kernel surface at the next synchronisation") {
  SKIP_WITHOUT_CUDA();
  const Tensor x = to_device(randu({3, 4}, 2), gpu());
  const Tensor idx = to_device(from_vector<std::int64_t>({0, 9, 1}, {3, 1}), gpu());
  CHECK_THROWS_WITH_AS(gather(x, 1, idx).to_vector<float>(), Contains("[gather] index 9 out of range"), Error);
  // The error is raised once; the device keeps working.
  expect_close("after", to_device(add(x, x), Device::cpu()), to_device(add(x, x), Device::cpu()));
  const Tensor bad = to_device(from_vector<std::int64_t>({1, 5}, {2}), gpu());
  CHECK_THROWS_WITH_AS((one_hot(bad, 3), synchronize(gpu())), Contains("[one_hot] class index 5"), Error);
  CHECK_THROWS_WITH_AS(add(x, to_device(x, Device::cpu())), Contains("[add] tensors on different devices"), Error);
}

TEST_CASE("cuda elementwise: every dtype of comparisons, where, casts and fills") {
  SKIP_WITHOUT_CUDA();
  const Tensor a = to_dtype(mul(randu({4, 6}, 3, DType::f64), 3.0), DType::i64);
  const Tensor b = to_dtype(mul(randu({6}, 4, DType::f64), 3.0), DType::i64);
  const Tensor ga = to_device(a, gpu()), gb = to_device(b, gpu());
  expect_close("add i64", add(a, b), add(ga, gb));
  expect_close("max i64", maximum(a, b), maximum(ga, gb));
  expect_close("lt i64", lt(a, b), lt(ga, gb));
  expect_close("eq i64", eq(a, b), eq(ga, gb));
  expect_close("relu i64", relu(a), relu(ga));
  const Tensor c = lt(a, b), gc = lt(ga, gb);
  expect_close("and", logical_and(c, logical_not(eq(a, b))), logical_and(gc, logical_not(eq(ga, gb))));
  expect_close("where i64", where(c, a, b), where(gc, ga, gb));
  for (DType to : {DType::f32, DType::f64, DType::i64, DType::b8, DType::u8}) {
    expect_close("cast", to_dtype(a, to), to_dtype(ga, to));
    expect_close("full", full({3, 2}, 2.5, {to}), full({3, 2}, 2.5, {to, gpu()}));
  }
  const Tensor f = randu({5, 3}, 5);
  Tensor special = clone(f);
  special = where(gt(f, 1.5), full_like(f, std::numeric_limits<double>::quiet_NaN()), f);
  const Tensor gs = to_device(special, gpu());
  expect_close("isfinite", isfinite(special), isfinite(gs));
  expect_close("maximum NaN", maximum(special, f), maximum(gs, to_device(f, gpu())));
  Tensor dst = clone(f), gdst = to_device(f, gpu());
  add_(dst, special, 0.5);
  add_(gdst, gs, 0.5);
  mul_(dst, -2.0);
  mul_(gdst, -2.0);
  expect_close("add_ mul_", dst, gdst, 1e-6, 1e-6);
}

TEST_CASE("cuda rng: the same (seed, offset) gives the same numbers as the CPU") {
  SKIP_WITHOUT_CUDA();
  for (DType d : {DType::f32, DType::f64}) {
    Generator gc(77), gg(77);
    expect_close("rand", rand({1001}, {d}, &gc), rand({1001}, {d, gpu()}, &gg));
    expect_close("uniform", uniform({7, 9}, -3.0, 0.5, {d}, &gc), uniform({7, 9}, -3.0, 0.5, {d, gpu()}, &gg));
    const double tol = d == DType::f32 ? 2e-6 : 1e-14;  // device log/cos/sqrt round differently
    expect_close("randn", randn({513}, {d}, &gc), randn({513}, {d, gpu()}, &gg), tol, tol);
    expect_close("gumbel", gumbel({3, 65}, {d}, &gc), gumbel({3, 65}, {d, gpu()}, &gg), tol, tol);
    CHECK(gc.offset() == gg.offset());
  }
}

TEST_CASE("cuda matmul: cuBLAS over every operand layout, batch broadcasting and beta") {
  SKIP_WITHOUT_CUDA();
  for (DType d : {DType::f64, DType::f32}) {
    const double tol = d == DType::f32 ? 1e-5 : 1e-12;
    const Tensor a = randu({3, 4, 5}, 6, d), b = randu({5, 6}, 7, d), bb = randu({3, 5, 6}, 8, d);
    const Tensor ga = to_device(a, gpu()), gb = to_device(b, gpu()), gbb = to_device(bb, gpu());
    expect_close("shared B", matmul(a, b), matmul(ga, gb), tol, tol);
    expect_close("batched", matmul(a, bb), matmul(ga, gbb), tol, tol);
    expect_close("trans", matmul(bb, a, true, true), matmul(gbb, ga, true, true), tol, tol);
    expect_close("1-d", matmul(slice(b, 1, 0, 1), select(b, 1, 2)), matmul(slice(gb, 1, 0, 1), select(gb, 1, 2)), tol, tol);
    const Tensor sa = slice(a, 2, 0, 5, 2);  // strided: copied to a contiguous operand
    const Tensor sb = slice(b, 0, 0, 5, 2);
    expect_close("strided", matmul(sa, sb), matmul(slice(ga, 2, 0, 5, 2), slice(gb, 0, 0, 5, 2)), tol, tol);
    Tensor out = randu({3, 4, 6}, 9, d), gout = to_device(out, gpu());
    matmul_into(out, a, bb, false, false, 0.5, 1.0);
    matmul_into(gout, ga, gbb, false, false, 0.5, 1.0);
    expect_close("matmul_into beta 1", out, gout, tol, tol);
    const Tensor empty_k = zeros({4, 0}, {d});
    expect_close("k = 0", matmul(empty_k, zeros({0, 3}, {d})),
                 matmul(to_device(empty_k, gpu()), zeros({0, 3}, {d, gpu()})));
  }
  const Tensor a = randu({64, 128}, 10), b = randu({128, 32}, 11);
  set_allow_tf32(true);
  const Tensor tf32 = matmul(to_device(a, gpu()), to_device(b, gpu()));
  set_allow_tf32(false);
  expect_close("tf32", matmul(a, b), tf32, 5e-2, 1e-2);
}

TEST_CASE("cuda reductions and indexing: i64, ties, NaN, dims in the middle") {
  SKIP_WITHOUT_CUDA();
  const Tensor i = to_dtype(mul(randu({4, 5, 6}, 12, DType::f64), 4.0), DType::i64);
  const Tensor gi = to_device(i, gpu());
  expect_close("sum i64", sum(i, {0, 2}), sum(gi, {0, 2}));
  expect_close("amax i64", amax(i, {1}), amax(gi, {1}));
  expect_close("cumsum i64", cumsum(i, 1, true, true), cumsum(gi, 1, true, true));
  const Tensor ties = from_vector<float>({1, 3, 3, 2, 5, 5, 5, 0}, {2, 4});
  const Tensor gt_ = to_device(ties, gpu());
  expect_close("argmax ties", argmax(ties, 1), argmax(gt_, 1));
  expect_close("topk ties values", topk(ties, 2).values, topk(gt_, 2).values);
  expect_close("topk ties indices", topk(ties, 2).indices, topk(gt_, 2).indices);
  expect_close("topk smallest", topk(ties, 3, 1, false).indices, topk(gt_, 3, 1, false).indices);
  const Tensor x = randu({3, 7, 5}, 13);
  const Tensor nan = where(gt(x, 1.8f), full_like(x, std::numeric_limits<double>::quiet_NaN()), x);
  const Tensor gx = to_device(x, gpu()), gnan = to_device(nan, gpu());
  expect_close("amax NaN", amax(nan, {1}), amax(gnan, {1}));
  expect_close("max NaN", max(nan, 2).values, max(gnan, 2).values);
  expect_close("softmax mid dim", softmax(x, 1), softmax(gx, 1), 1e-6, 1e-5);
  expect_close("logsumexp", logsumexp(x, {0, 2}), logsumexp(gx, {0, 2}), 1e-6, 1e-5);
  expect_close("norm inf", norm(x, INFINITY, {1}), norm(gx, INFINITY, {1}));
  expect_close("mean all", mean(x, {}), mean(gx, {}), 1e-6, 1e-6);
  const Tensor idx = from_vector<std::int64_t>({3, 0, 3, 1}, {4});
  const Tensor big = randu({5, 4096}, 14);  // long rows: the block-wide path
  expect_close("sum long rows", sum(big, {1}), sum(to_device(big, gpu()), {1}), 1e-5, 1e-5);
  expect_close("scatter repeated", scatter(zeros({2, 4}), 1, from_vector<std::int64_t>({1, 1, 2, 2}, {2, 2}), ones({2, 2})),
               scatter(zeros({2, 4}, {DType::f32, gpu()}), 1, to_device(from_vector<std::int64_t>({1, 1, 2, 2}, {2, 2}), gpu()),
                       ones({2, 2}, {DType::f32, gpu()})));
  expect_close("one_hot", one_hot(idx, 4, DType::f32), one_hot(to_device(idx, gpu()), 4, DType::f32));
}
