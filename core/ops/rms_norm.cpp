#include "core/ops/rms_norm.h"

#include <cmath>
#include <limits>

#include "core/kernels/scalar_math.h"
#include "core/ops/creation.h"
#include "core/ops/dispatch.h"
#include "core/ops/elementwise.h"
#include "core/ops/map.h"
#include "core/ops/reduce.h"
#include "core/ops/views.h"

namespace moegrad::core {
namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

DType check_operands(const char* op, const Tensor& x, const Tensor& gamma, double scale, double eps) {
  check_defined(op, x, "x");
  check_defined(op, gamma, "gamma");
  const DType dtype = common_dtype(op, {&x, &gamma});
  MOEGRAD_CHECK(is_floating(dtype), op, "needs f32 or f64, got {}", describe(x));
  MOEGRAD_CHECK(x.dim() >= 1, op, "x must be [..., D], got {}", describe(x));
  MOEGRAD_CHECK(broadcast_shapes(op, x.shape(), gamma.shape()) == x.shape(), op, "gamma {} must broadcast to x {}",
                describe(gamma), describe(x));
  MOEGRAD_CHECK(eps > 0 && std::isfinite(eps), op, "eps must be finite and > 0, got {}", eps);
  MOEGRAD_CHECK(std::isfinite(scale), op, "scale must be finite, got {}", scale);
  return dtype;
}

}  // namespace

RmsNormForward rms_norm(const Tensor& x, const Tensor& gamma, double scale, double eps) {
  const char* op = "rms_norm";
  const DType dtype = check_operands(op, x, gamma, scale, eps);
  const Device device = common_device(op, {&x, &gamma});
  RmsNormForward f{empty_for(op, x.shape(), {dtype, device}), norm(x, 2.0, {-1}, true)};
  const Tensor n = expand(clamp(f.norm, eps, kInf), x.shape());
  visit_floating(dtype, op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    run_map<T, T, T, T>(f.out, {x, n, expand(gamma, x.shape())}, math::NormalizeScale{scale});
  });
  return f;
}

std::array<Tensor, 2> rms_norm_backward(const Tensor& gy, const Tensor& x, const Tensor& gamma, const Tensor& norm,
                                        double scale, double eps, bool need_x, bool need_gamma) {
  const char* op = "rms_norm_backward";
  check_defined(op, gy, "gy");
  check_defined(op, norm, "norm");
  const DType dtype = check_operands(op, x, gamma, scale, eps);
  const Device device = common_device(op, {&gy, &x, &gamma, &norm});
  MOEGRAD_CHECK(gy.shape() == x.shape() && gy.dtype() == dtype, op, "gy {} must match x {}", describe(gy),
                describe(x));
  Shape rows = x.shape();
  rows.back() = 1;
  MOEGRAD_CHECK(norm.shape() == rows && norm.dtype() == dtype, op, "norm {} must be {} of x {}", describe(norm),
                shape_str(rows), describe(x));
  const Tensor n = clamp(norm, eps, kInf);  // [..., 1]
  std::array<Tensor, 2> grads;
  visit_floating(dtype, op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    if (need_gamma) {  // d gamma = gy * (x / n) * scale, summed over the rows by autograd
      grads[1] = empty_for(op, x.shape(), {dtype, device});
      run_map<T, T, T, T>(grads[1], {x, expand(n, x.shape()), gy}, math::NormalizeScale{scale});
    }
    if (need_x) {
      // u = gy * gamma; d x = u * (s / n) - x * (s (x . u) / n^3) where the norm was not clamped
      // (the x . u term is the norm's own gradient), u * (s / eps) where it was.
      const Tensor u = mul(gy, gamma);
      const Tensor a = div(full({}, scale, {dtype, device}), n);
      const Tensor dot = sum(mul(x, u), {-1}, true);
      const Tensor b = where(ge(norm, eps), div(mul(dot, a), mul(n, n)), zeros({}, {dtype, device}));
      grads[0] = empty_for(op, x.shape(), {dtype, device});
      run_map<T, T, T, T, T>(grads[0], {u, expand(a, x.shape()), x, expand(b, x.shape())}, math::MulSubMul{});
    }
  });
  return grads;
}

}  // namespace moegrad::core
