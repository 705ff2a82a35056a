#include "core/ops/rotary.h"

#include "core/kernels/scalar_math.h"
#include "core/ops/dispatch.h"
#include "core/ops/map.h"
#include "core/ops/views.h"

namespace moegrad::core {

Tensor rotary(const Tensor& x, const Tensor& cos, const Tensor& sin, bool inverse) {
  const char* op = inverse ? "rotary (inverse)" : "rotary";
  check_defined(op, x, "x");
  check_defined(op, cos, "cos");
  check_defined(op, sin, "sin");
  const DType dtype = common_dtype(op, {&x, &cos, &sin});
  const Device device = common_device(op, {&x, &cos, &sin});
  MOEGRAD_CHECK(is_floating(dtype), op, "needs f32 or f64, got {}", describe(x));
  MOEGRAD_CHECK(x.dim() >= 1 && x.size(-1) % 2 == 0, op, "x must be [..., D] with D even, got {}", describe(x));
  const std::int64_t half = x.size(-1) / 2;
  const Tensor x1 = narrow(x, -1, 0, half), x2 = narrow(x, -1, half, half);
  const Shape& pairs = x1.shape();
  MOEGRAD_CHECK(broadcast_shapes(op, pairs, cos.shape()) == pairs && broadcast_shapes(op, pairs, sin.shape()) == pairs,
                op, "cos {} and sin {} must broadcast to x's half shape {}", describe(cos), describe(sin),
                shape_str(pairs));
  Tensor out = empty_for(op, x.shape(), {dtype, device});
  const std::array<Tensor, 2> halves{narrow(out, -1, 0, half), narrow(out, -1, half, half)};
  const std::array<Tensor, 4> ins{x1, x2, expand(cos, pairs), expand(sin, pairs)};
  visit_floating(dtype, op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    if (inverse)
      run_map_outputs<T, 2, T, T, T, T>(halves, ins, math::RotaryInverse{});
    else
      run_map_outputs<T, 2, T, T, T, T>(halves, ins, math::Rotary{});
  });
  return out;
}

}  // namespace moegrad::core
