// The CUDA causal attention kernel (core/cuda/attention.cu) against the CPU one on the same
// inputs, at shapes that cross its tiles (64-row blocks, 32-row staged tiles) and the CPU's
// 64-row blocks: out, lse and the three gradients, f32 and f64; a head dim whose shared memory
// needs the opt-in above 48 KiB; permuted [B, T, H, D] operands read in place on both devices;
// operands on two devices. Skipped without a CUDA device (the
// small shapes run in the catalogue's "cuda vs cpu: causal_attention" too).
#include <doctest/doctest.h>

#include "core/ops.h"
#include "core/ops/attention.h"
#include "tests/cuda/cuda_test.h"

using namespace moegrad;
using namespace moegrad::core;
using doctest::Contains;

namespace {

// permuted: each operand a [B, T, H, D] tensor viewed as [B, H, T, D] (rows H D apart), as the
// model passes them; on the GPU the same view of the copied storage.
void compare(const Shape& shape, DType dt, double scale, double atol, double rtol, bool permuted = false) {
  INFO("shape ", shape_str(shape), " ", dtype_name(dt), permuted ? " permuted" : "");
  Generator gen(5);
  auto make = [&] {
    if (!permuted) return to_dtype(randn(shape, {}, &gen), dt);
    return permute(to_dtype(randn({shape[0], shape[2], shape[1], shape[3]}, {}, &gen), dt), {0, 2, 1, 3});
  };
  // The GPU copy keeps the view: copy the [B, T, H, D] storage, then permute again.
  auto on_gpu = [&](const Tensor& t) {
    return permuted ? permute(to_device(permute(t, {0, 2, 1, 3}), cuda_test::gpu()), {0, 2, 1, 3})
                    : to_device(t, cuda_test::gpu());
  };
  const Tensor q = make(), k = make(), v = make(), g = make();
  const Device gpu = cuda_test::gpu();
  const AttentionForward fc = causal_attention_forward(q, k, v, scale);
  const AttentionForward fg = causal_attention_forward(on_gpu(q), on_gpu(k), on_gpu(v), scale);
  REQUIRE(fg.out.device() == gpu);
  cuda_test::expect_close("out", fc.out, fg.out, atol, rtol);
  cuda_test::expect_close("lse", fc.lse, fg.lse, atol, rtol);
  const AttentionGrads dc = causal_attention_backward(q, k, v, fc.out, fc.lse, g, scale);
  const AttentionGrads dg =
      causal_attention_backward(on_gpu(q), on_gpu(k), on_gpu(v), fg.out, fg.lse, on_gpu(g), scale);
  cuda_test::expect_close("dq", dc.dq, dg.dq, atol, rtol);
  cuda_test::expect_close("dk", dc.dk, dg.dk, atol, rtol);
  cuda_test::expect_close("dv", dc.dv, dg.dv, atol, rtol);
}

}  // namespace

TEST_CASE("cuda causal_attention matches the CPU kernel") {
  SKIP_WITHOUT_CUDA();
  compare({2, 3, 130, 16}, DType::f64, 0.25, 1e-11, 1e-9);
  compare({2, 3, 130, 16}, DType::f32, 0.25, 1e-4, 1e-4);
  compare({1, 4, 256, 64}, DType::f32, 0.125, 1e-4, 1e-4);
  compare({1, 1, 97, 128}, DType::f64, 0.09, 1e-11, 1e-9);  // 2 x 32 x 128 x 8 B = 64 KiB of shared memory
  compare({3, 1, 1, 8}, DType::f32, 1.0, 1e-5, 1e-5);
  compare({2, 3, 130, 16}, DType::f64, 0.25, 1e-11, 1e-9, true);
  compare({2, 4, 100, 32}, DType::f32, 0.18, 1e-4, 1e-4, true);
}

TEST_CASE("cuda causal_attention: operands on two devices are one line") {
  SKIP_WITHOUT_CUDA();
  const Tensor x = zeros({1, 2, 3, 4});
  CHECK_THROWS_WITH_AS(causal_attention_forward(x, to_device(x, cuda_test::gpu()), x, 1.0),
                       Contains("[causal_attention] tensors on different devices"), Error);
}
