// Elementwise ops: validate, broadcast, allocate, then one strided loop over a functor from
// core/kernels/scalar_math.h on the output's device (core/ops/map.h: CPU loop or CUDA kernel).
#include "core/ops/elementwise.h"

#include <limits>

#include "core/ops/map.h"
#include "core/ops/creation.h"
#include "core/ops/dispatch.h"
#include "core/ops/views.h"
#include "core/kernels/scalar_math.h"

namespace moegrad::core {
namespace {

enum class Kinds { floating, numeric, any, boolean };

// Only the dtypes of the op's kind are instantiated.
template <Kinds K, class F> decltype(auto) visit_kind(DType d, const char* op, F&& f) {
  if constexpr (K == Kinds::floating) return visit_floating(d, op, f);
  else if constexpr (K == Kinds::numeric) return visit_numeric(d, op, f);
  else if constexpr (K == Kinds::any) return visit_dtype(d, op, f);
  else if (d == DType::b8) return f(TypeTag<bool>{});
  else throw_dtype_unsupported(op, d, "bool");
}

template <Kinds K = Kinds::floating, class Fn>
Tensor unary(const char* op, const Tensor& x, Fn fn) {
  check_defined(op, x);
  Tensor out = empty_for(op, x.shape(), {x.dtype(), x.device()});
  visit_kind<K>(x.dtype(), op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    run_map<T, T>(out, {x}, fn);
  });
  return out;
}

// out = fn(a, b) with broadcasting; Out = bool for comparisons, else the input type.
template <bool kPredicate, Kinds K, class Fn>
Tensor binary(const char* op, const Tensor& a, const Tensor& b, Fn fn) {
  const Device device = common_device(op, {&a, &b});
  const DType dtype = common_dtype(op, {&a, &b});
  const Shape shape = broadcast_shapes(op, a.shape(), b.shape());
  Tensor out = empty_for(op, shape, {kPredicate ? DType::b8 : dtype, device});
  const Tensor ea = expand(a, shape), eb = expand(b, shape);
  visit_kind<K>(dtype, op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    using Out = std::conditional_t<kPredicate, bool, T>;
    run_map<Out, T, T>(out, {ea, eb}, fn);
  });
  return out;
}

// The result buffer of an op with an optional output: `given` when defined (it must be a
// contiguous tensor of the result's shape, dtype and device; it may alias an input that the op
// reads at the same index before writing), else a fresh one.
Tensor output_buffer(const char* op, const char* what, const Tensor& given, const Shape& shape, DType dtype,
                     Device device) {
  if (!given.defined()) return empty_for(op, shape, {dtype, device});
  MOEGRAD_CHECK(given.shape() == shape && given.dtype() == dtype && given.device() == device && given.is_contiguous(),
                op, "{} {} on {} must be a contiguous {} tensor of shape {} on {}", what, describe(given),
                given.device().str(), dtype_name(dtype), shape_str(shape), device.str());
  return given;
}

// Derivative kernels: fn(gy, x), gy broadcast to x's shape. `out` (optional) receives the
// result and may be gy itself (each element is read before it is written, at the same index).
template <class Fn>
Tensor backward_map(const char* op, const Tensor& gy, const Tensor& x, Fn fn, const Tensor& given_out) {
  const Device device = common_device(op, {&gy, &x});
  const DType dtype = common_dtype(op, {&gy, &x});
  const Tensor out = output_buffer(op, "out", given_out, x.shape(), dtype, device);
  const Tensor g = expand(gy, x.shape());
  visit_floating(dtype, op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    run_map<T, T, T>(out, {g, x}, fn);
  });
  return out;
}

Tensor scalar_like(const Tensor& a, double value) {
  check_defined("scalar", a);
  return scalar_tensor(value, {a.dtype(), a.device()});
}

}  // namespace

Tensor add(const Tensor& a, const Tensor& b) { return binary<false, Kinds::numeric>("add", a, b, math::Add{}); }
Tensor sub(const Tensor& a, const Tensor& b) { return binary<false, Kinds::numeric>("sub", a, b, math::Sub{}); }
Tensor mul(const Tensor& a, const Tensor& b) { return binary<false, Kinds::numeric>("mul", a, b, math::Mul{}); }
Tensor div(const Tensor& a, const Tensor& b) { return binary<false, Kinds::floating>("div", a, b, math::Div{}); }
Tensor pow(const Tensor& a, const Tensor& b) { return binary<false, Kinds::floating>("pow", a, b, math::Pow{}); }
Tensor maximum(const Tensor& a, const Tensor& b) { return binary<false, Kinds::numeric>("maximum", a, b, math::Maximum{}); }
Tensor minimum(const Tensor& a, const Tensor& b) { return binary<false, Kinds::numeric>("minimum", a, b, math::Minimum{}); }
Tensor add(const Tensor& a, double b) { return add(a, scalar_like(a, b)); }
Tensor sub(const Tensor& a, double b) { return sub(a, scalar_like(a, b)); }
Tensor mul(const Tensor& a, double b) { return mul(a, scalar_like(a, b)); }
Tensor div(const Tensor& a, double b) { return div(a, scalar_like(a, b)); }
Tensor pow(const Tensor& a, double exponent) { return pow(a, scalar_like(a, exponent)); }
Tensor rsub(const Tensor& a, double b) { return sub(scalar_like(a, b), a); }

Tensor lt(const Tensor& a, const Tensor& b) { return binary<true, Kinds::numeric>("lt", a, b, math::Lt{}); }
Tensor le(const Tensor& a, const Tensor& b) { return binary<true, Kinds::numeric>("le", a, b, math::Le{}); }
Tensor gt(const Tensor& a, const Tensor& b) { return binary<true, Kinds::numeric>("gt", a, b, math::Gt{}); }
Tensor ge(const Tensor& a, const Tensor& b) { return binary<true, Kinds::numeric>("ge", a, b, math::Ge{}); }
Tensor eq(const Tensor& a, const Tensor& b) { return binary<true, Kinds::any>("eq", a, b, math::Eq{}); }
Tensor ne(const Tensor& a, const Tensor& b) { return binary<true, Kinds::any>("ne", a, b, math::Ne{}); }
Tensor lt(const Tensor& a, double b) { return lt(a, scalar_like(a, b)); }
Tensor le(const Tensor& a, double b) { return le(a, scalar_like(a, b)); }
Tensor gt(const Tensor& a, double b) { return gt(a, scalar_like(a, b)); }
Tensor ge(const Tensor& a, double b) { return ge(a, scalar_like(a, b)); }
Tensor eq(const Tensor& a, double b) { return eq(a, scalar_like(a, b)); }
Tensor ne(const Tensor& a, double b) { return ne(a, scalar_like(a, b)); }

Tensor logical_and(const Tensor& a, const Tensor& b) {
  MOEGRAD_CHECK(a.defined() && a.dtype() == DType::b8, "logical_and", "needs bool tensors, got {} and {}", describe(a), describe(b));
  return binary<true, Kinds::boolean>("logical_and", a, b, math::LogicalAnd{});
}
Tensor logical_or(const Tensor& a, const Tensor& b) {
  MOEGRAD_CHECK(a.defined() && a.dtype() == DType::b8, "logical_or", "needs bool tensors, got {} and {}", describe(a), describe(b));
  return binary<true, Kinds::boolean>("logical_or", a, b, math::LogicalOr{});
}
Tensor logical_not(const Tensor& a) {
  MOEGRAD_CHECK(a.defined() && a.dtype() == DType::b8, "logical_not", "needs a bool tensor, got {}", describe(a));
  return unary<Kinds::boolean>("logical_not", a, math::LogicalNot{});
}

Tensor isfinite(const Tensor& x) {
  check_defined("isfinite", x);
  Tensor out = empty_for("isfinite", x.shape(), {DType::b8, x.device()});
  visit_numeric(x.dtype(), "isfinite", [&](auto tag) {
    using T = typename decltype(tag)::type;
    run_map<bool, T>(out, {x}, math::IsFinite{});
  });
  return out;
}

Tensor neg(const Tensor& x) { return unary<Kinds::numeric>("neg", x, math::Neg{}); }
Tensor exp(const Tensor& x) { return unary("exp", x, math::Exp{}); }
Tensor log(const Tensor& x) { return unary("log", x, math::Log{}); }
Tensor sqrt(const Tensor& x) { return unary("sqrt", x, math::Sqrt{}); }
Tensor rsqrt(const Tensor& x) { return unary("rsqrt", x, math::Rsqrt{}); }
Tensor abs(const Tensor& x) { return unary<Kinds::numeric>("abs", x, math::Abs{}); }
Tensor sign(const Tensor& x) { return unary<Kinds::numeric>("sign", x, math::Sign{}); }
Tensor square(const Tensor& x) { return unary<Kinds::numeric>("square", x, math::Square{}); }
Tensor tanh(const Tensor& x) { return unary("tanh", x, math::Tanh{}); }
Tensor sigmoid(const Tensor& x) { return unary("sigmoid", x, math::Sigmoid{}); }
Tensor relu(const Tensor& x) { return unary<Kinds::numeric>("relu", x, math::Relu{}); }
Tensor leaky_relu(const Tensor& x, double slope) { return unary("leaky_relu", x, math::LeakyRelu{slope}); }
Tensor gelu(const Tensor& x) { return unary("gelu", x, math::Gelu{}); }
Tensor gelu_tanh(const Tensor& x) { return unary("gelu_tanh", x, math::GeluTanh{}); }
Tensor silu(const Tensor& x) { return unary("silu", x, math::Silu{}); }
Tensor clamp(const Tensor& x, double lo, double hi) {
  MOEGRAD_CHECK(!(lo > hi), "clamp", "lo {} > hi {} for {}", lo, hi, describe(x));
  return unary<Kinds::floating>("clamp", x, math::Clamp{lo, hi});
}

Tensor gelu_backward(const Tensor& gy, const Tensor& x, const Tensor& out) {
  return backward_map("gelu_backward", gy, x, math::GeluBackward{}, out);
}
Tensor gelu_tanh_backward(const Tensor& gy, const Tensor& x, const Tensor& out) {
  return backward_map("gelu_tanh_backward", gy, x, math::GeluTanhBackward{}, out);
}
Tensor silu_backward(const Tensor& gy, const Tensor& x, const Tensor& out) {
  return backward_map("silu_backward", gy, x, math::SiluBackward{}, out);
}
Tensor leaky_relu_backward(const Tensor& gy, const Tensor& x, double slope, const Tensor& out) {
  return backward_map("leaky_relu_backward", gy, x, math::LeakyReluBackward{slope}, out);
}

namespace {
// The halves of h [..., 2H] and the common [..., H] shape with mult.
struct GegluOperands {
  Tensor value, gate;
  Shape shape;
  DType dtype;
};
GegluOperands geglu_operands(const char* op, const Tensor& h, const Tensor& mult) {
  check_defined(op, h, "h");
  check_defined(op, mult, "mult");
  const DType dtype = common_dtype(op, {&h, &mult});
  MOEGRAD_CHECK(is_floating(dtype), op, "needs f32 or f64, got {}", describe(h));
  MOEGRAD_CHECK(h.dim() >= 1 && h.size(-1) % 2 == 0, op, "h must be [..., 2H] (value, gate), got {}", describe(h));
  const std::int64_t H = h.size(-1) / 2;
  GegluOperands g{narrow(h, -1, 0, H), narrow(h, -1, H, H), {}, dtype};
  g.shape = broadcast_shapes(op, g.value.shape(), mult.shape());
  MOEGRAD_CHECK(g.shape == g.value.shape(), op, "mult {} must broadcast to the half shape {}", describe(mult),
                shape_str(g.value.shape()));
  return g;
}
}  // namespace

Tensor geglu(const Tensor& h, const Tensor& mult) {
  const char* op = "geglu";
  const Device device = common_device(op, {&h, &mult});
  const GegluOperands g = geglu_operands(op, h, mult);
  Tensor out = empty_for(op, g.shape, {g.dtype, device});
  const Tensor m = expand(to_dtype(mult, g.dtype), g.shape);
  visit_floating(g.dtype, op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    run_map<T, T, T, T>(out, {to_dtype(g.value, g.dtype), to_dtype(g.gate, g.dtype), m}, math::GegluMul{});
  });
  return out;
}

std::array<Tensor, 2> geglu_backward(const Tensor& gy, const Tensor& h, const Tensor& mult, bool need_h,
                                     bool need_mult, const Tensor& dh_out, const Tensor& dmult_out) {
  const char* op = "geglu_backward";
  const Device device = common_device(op, {&gy, &h, &mult});
  const GegluOperands g = geglu_operands(op, h, mult);
  Shape full = g.shape;
  full.back() *= 2;
  const std::array<Tensor, 4> ins{expand(to_dtype(gy, g.dtype), g.shape), to_dtype(g.value, g.dtype),
                                  to_dtype(g.gate, g.dtype), expand(to_dtype(mult, g.dtype), g.shape)};
  std::array<Tensor, 2> grads;
  if (need_h) grads[0] = output_buffer(op, "dh_out", dh_out, full, g.dtype, device);
  if (need_mult) grads[1] = output_buffer(op, "dmult_out", dmult_out, g.shape, g.dtype, device);
  const std::int64_t H = g.shape.back();
  visit_floating(g.dtype, op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    if (need_h) {  // both halves of d h (and d mult) from one pass over the inputs
      const Tensor dvalue = narrow(grads[0], -1, 0, H), dgate = narrow(grads[0], -1, H, H);
      if (need_mult)
        run_map_outputs<T, 3, T, T, T, T>({dvalue, dgate, grads[1]}, ins, math::GegluGrads{});
      else
        run_map_outputs<T, 2, T, T, T, T>({dvalue, dgate}, ins, math::GegluGradsInput{});
    } else if (need_mult) {
      run_map<T, T, T, T, T>(grads[1], ins, math::GegluGradMult{});
    }
  });
  return grads;
}

Tensor where(const Tensor& cond, const Tensor& a, const Tensor& b) {
  const Device device = common_device("where", {&cond, &a, &b});
  MOEGRAD_CHECK(cond.dtype() == DType::b8, "where", "condition must be bool, got {}", describe(cond));
  const DType dtype = common_dtype("where", {&a, &b});
  const Shape shape = broadcast_shapes("where", broadcast_shapes("where", cond.shape(), a.shape()), b.shape());
  Tensor out = empty_for("where", shape, {dtype, device});
  const Tensor ec = expand(cond, shape), ea = expand(a, shape), eb = expand(b, shape);
  visit_dtype(dtype, "where", [&](auto tag) {
    using T = typename decltype(tag)::type;
    run_map<T, bool, T, T>(out, {ec, ea, eb}, math::Select{});
  });
  return out;
}

namespace {
void check_writable(const char* op, const Tensor& dst) {
  for (std::int64_t i = 0; i < dst.dim(); ++i)
    MOEGRAD_CHECK(dst.strides()[i] != 0 || dst.shape()[i] <= 1, op,
                  "destination {} is a broadcast view (stride 0); writes would overlap", describe(dst));
}
}  // namespace

void add_(const Tensor& dst, const Tensor& src, double alpha) {
  common_device("add_", {&dst, &src});
  const DType dtype = common_dtype("add_", {&dst, &src});
  check_writable("add_", dst);
  const Tensor s = expand(src, dst.shape());
  visit_numeric(dtype, "add_", [&](auto tag) {
    using T = typename decltype(tag)::type;
    if (alpha == 1.0)
      run_map<T, T, T>(dst, {dst, s}, math::Add{});
    else
      run_map<T, T, T>(dst, {dst, s}, math::AddScaled{alpha});
  });
}

void mul_(const Tensor& dst, double value) {
  check_defined("mul_", dst);
  check_writable("mul_", dst);
  visit_numeric(dst.dtype(), "mul_", [&](auto tag) {
    using T = typename decltype(tag)::type;
    run_map<T, T>(dst, {dst}, math::Scale{value});
  });
}

}  // namespace moegrad::core
