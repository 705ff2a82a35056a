// bf16 on CUDA against the CPU (issue 16): the conversion bit for bit (the same functor of
// core/kernels/bf16_math.h), the cuBLAS bf16 GEMMs (cublasGemmEx, FP32 accumulation) and the
// grouped expert GEMMs within f32 summation order of the CPU's, and a module step under
// Precision::bf16. Skipped without a CUDA device.
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "core/ops.h"
#include "tests/cuda/cuda_test.h"

using namespace moegrad;
using namespace moegrad::core;

namespace {

Tensor random_f32(const Shape& shape, std::uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> n(0.0f, 1.0f);
  std::vector<float> v(static_cast<std::size_t>(shape_numel(shape)));
  for (float& x : v) x = n(rng);
  return from_vector(v, shape);
}

Tensor host(const Tensor& t) { return to_device(t, Device::cpu()); }

// Both products summed in f32 from the same bf16 inputs: they differ by the order of the sums.
void expect_product_close(const std::string& what, const Tensor& want, const Tensor& got, std::int64_t k) {
  const double scale = amax(abs(want)).item<double>();
  cuda_test::expect_close(what, want, host(got), 4.0 * static_cast<double>(k) * std::ldexp(1.0, -24) * scale * 8, 1e-5);
}

}  // namespace

TEST_CASE("cuda bf16: f32 <-> bf16 conversions are bit for bit the CPU's") {
  SKIP_WITHOUT_CUDA();
  std::vector<float> values;
  for (std::uint32_t bits = 0; bits < 0x10000; bits += 3) {  // bf16 values and points between them
    const std::uint32_t u = (bits << 16) | (bits * 2654435761u >> 16);
    float f;
    std::memcpy(&f, &u, sizeof f);
    values.push_back(f);
  }
  const Tensor x = from_vector(values, {static_cast<std::int64_t>(values.size())});
  const Tensor cpu16 = to_dtype(x, DType::bf16);
  const Tensor gpu16 = to_dtype(to_device(x, cuda_test::gpu()), DType::bf16);
  const auto a = to_dtype(cpu16, DType::f32).to_vector<float>();
  const auto b = to_dtype(host(gpu16), DType::f32).to_vector<float>();
  REQUIRE(a.size() == b.size());
  int bad = 0;
  for (std::size_t i = 0; i < a.size(); ++i)
    if (std::memcmp(&a[i], &b[i], sizeof(float)) != 0 && !(std::isnan(a[i]) && std::isnan(b[i])) && bad++ < 5)
      FAIL_CHECK("element ", i, ": cuda ", b[i], " vs cpu ", a[i]);
  CHECK(bad == 0);
  // bf16 -> f32 on the device, and a strided bf16 -> bf16 copy.
  const auto c = host(to_dtype(gpu16, DType::f32)).to_vector<float>();
  for (std::size_t i = 0; i < a.size(); ++i)
    if (!(c[i] == a[i] || (std::isnan(c[i]) && std::isnan(a[i]))) && bad++ < 5) FAIL_CHECK("bf16 -> f32 element ", i);
  CHECK(bad == 0);
}

TEST_CASE("cuda bf16: matmul and grouped GEMMs through cuBLAS against the CPU") {
  SKIP_WITHOUT_CUDA();
  const Device gpu = cuda_test::gpu();
  const Tensor a = random_f32({3, 33, 130}, 1), b = random_f32({130, 17}, 2);
  const GemmPrecisionScope bf16(Precision::bf16);
  expect_product_close("matmul", matmul(a, b), matmul(to_device(a, gpu), to_device(b, gpu)), 130);
  expect_product_close("matmul trans_b", matmul(a, contiguous(transpose(b, 0, 1)), false, true),
                       matmul(to_device(a, gpu), to_device(contiguous(transpose(b, 0, 1)), gpu), false, true), 130);
  const std::vector<std::int64_t> off{0, 9, 9, 40, 64};
  const Tensor offsets = from_vector(off, {5});
  const Tensor x = random_f32({64, 48}, 3), w = random_f32({4, 24, 48}, 4), bias = random_f32({4, 24}, 5);
  const Tensor gy = random_f32({64, 24}, 6);
  expect_product_close("grouped_matmul", grouped_matmul(x, w, offsets, true, bias),
                       grouped_matmul(to_device(x, gpu), to_device(w, gpu), offsets, true, to_device(bias, gpu)), 48);
  expect_product_close("grouped_matmul_weight_grad", grouped_matmul_weight_grad(x, gy, offsets, true),
                       grouped_matmul_weight_grad(to_device(x, gpu), to_device(gy, gpu), offsets, true), 64);
}
