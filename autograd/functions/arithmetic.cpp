// Broadcasting arithmetic. Backwards return gradients of the broadcast shape; the engine sums
// them back to each input's shape (sum_to_shape), so no op reduces by hand.
#include "autograd/functions.h"
#include "autograd/node.h"
#include "autograd/registry.h"

namespace moegrad::ag {

MOEGRAD_DIFFERENTIABLE("add", "sub", "mul", "div", "pow", "maximum", "minimum", "where", "clamp");

namespace {
Variable scalar_like(const Variable& a, double v) {
  return constant(core::scalar_tensor(v, {a.dtype(), a.device()}));
}
}  // namespace

Variable add(const Variable& a, const Variable& b) {
  return record("add", core::add(a.value(), b.value()), {a, b},
                [](const Tensor& gy, const Needs&) { return Grads{gy, gy}; });
}

Variable sub(const Variable& a, const Variable& b) {
  return record("sub", core::sub(a.value(), b.value()), {a, b}, [](const Tensor& gy, const Needs& need) {
    return Grads{gy, need[1] ? core::neg(gy) : Tensor{}};
  });
}

Variable mul(const Variable& a, const Variable& b) {
  // Each operand is saved only for the other's gradient: out * g with a constant g keeps g, not out.
  return record("mul", core::mul(a.value(), b.value()), {a, b},
                [A = b.requires_grad() ? a.value() : Tensor{}, B = a.requires_grad() ? b.value() : Tensor{}](
                    const Tensor& gy, const Needs& need) {
                  return Grads{need[0] ? core::mul(gy, B) : Tensor{},   // d(ab)/da = b
                               need[1] ? core::mul(gy, A) : Tensor{}};  // d(ab)/db = a
                });
}

Variable div(const Variable& a, const Variable& b) {
  return record("div", core::div(a.value(), b.value()), {a, b},
                [A = a.value(), B = b.value()](const Tensor& gy, const Needs& need) {
                  Tensor ga = core::div(gy, B);  // d(a/b)/da = 1/b
                  Tensor gb = need[1] ? core::neg(core::div(core::mul(ga, A), B)) : Tensor{};  // -a/b²
                  return Grads{need[0] ? ga : Tensor{}, gb};
                });
}

Variable pow(const Variable& a, const Variable& b) {
  Tensor y = core::pow(a.value(), b.value());
  return record("pow", y, {a, b}, [A = a.value(), B = b.value(), y](const Tensor& gy, const Needs& need) {
    Tensor ga, gb;
    if (need[0]) ga = core::mul(gy, core::mul(B, core::pow(A, core::sub(B, 1.0))));  // b·a^(b-1)
    if (need[1]) gb = core::mul(gy, core::mul(y, core::log(A)));                       // a^b·ln a
    return Grads{ga, gb};
  });
}

// maximum/minimum: the gradient goes to the winning input; ties split it equally (as torch).
template <class Wins>
Variable pick_pair(const char* name, Tensor y, const Variable& a, const Variable& b, Wins wins) {
  return record(name, std::move(y), {a, b}, [A = a.value(), B = b.value(), wins](const Tensor& gy, const Needs&) {
    Tensor wa = core::add(core::to_dtype(wins(A, B), gy.dtype()),
                          core::mul(core::to_dtype(core::eq(A, B), gy.dtype()), 0.5));
    Tensor ga = core::mul(gy, wa);
    return Grads{ga, core::sub(gy, ga)};
  });
}

Variable maximum(const Variable& a, const Variable& b) {
  return pick_pair("maximum", core::maximum(a.value(), b.value()), a, b,
                   [](const Tensor& u, const Tensor& v) { return core::gt(u, v); });
}

Variable minimum(const Variable& a, const Variable& b) {
  return pick_pair("minimum", core::minimum(a.value(), b.value()), a, b,
                   [](const Tensor& u, const Tensor& v) { return core::lt(u, v); });
}

Variable add(const Variable& a, double b) { return add(a, scalar_like(a, b)); }
Variable sub(const Variable& a, double b) { return sub(a, scalar_like(a, b)); }
Variable rsub(const Variable& a, double b) { return sub(scalar_like(a, b), a); }
Variable mul(const Variable& a, double b) { return mul(a, scalar_like(a, b)); }
Variable div(const Variable& a, double b) { return div(a, scalar_like(a, b)); }

Variable pow(const Variable& a, double exponent) {
  return record("pow", core::pow(a.value(), exponent), {a}, [A = a.value(), exponent](const Tensor& gy, const Needs&) {
    return Grads{core::mul(gy, core::mul(core::pow(A, exponent - 1.0), exponent))};
  });
}

Variable where(const Tensor& cond, const Variable& a, const Variable& b) {
  return record("where", core::where(cond, a.value(), b.value()), {a, b}, [cond](const Tensor& gy, const Needs& need) {
    Tensor zero = core::zeros({}, {gy.dtype(), gy.device()});
    return Grads{need[0] ? core::where(cond, gy, zero) : Tensor{}, need[1] ? core::where(cond, zero, gy) : Tensor{}};
  });
}

// Gradient passes where lo <= x <= hi (as torch.clamp).
Variable clamp(const Variable& x, double lo, double hi) {
  return record("clamp", core::clamp(x.value(), lo, hi), {x}, [X = x.value(), lo, hi](const Tensor& gy, const Needs&) {
    Tensor inside = core::logical_and(core::ge(X, lo), core::le(X, hi));
    return Grads{core::mul(gy, core::to_dtype(inside, gy.dtype()))};
  });
}

Variable operator+(const Variable& a, const Variable& b) { return add(a, b); }
Variable operator-(const Variable& a, const Variable& b) { return sub(a, b); }
Variable operator*(const Variable& a, const Variable& b) { return mul(a, b); }
Variable operator/(const Variable& a, const Variable& b) { return div(a, b); }
Variable operator-(const Variable& a) { return neg(a); }
Variable operator+(const Variable& a, double b) { return add(a, b); }
Variable operator-(const Variable& a, double b) { return sub(a, b); }
Variable operator*(const Variable& a, double b) { return mul(a, b); }
Variable operator/(const Variable& a, double b) { return div(a, b); }
Variable operator+(double a, const Variable& b) { return add(b, a); }
Variable operator-(double a, const Variable& b) { return rsub(b, a); }
Variable operator*(double a, const Variable& b) { return mul(b, a); }

}  // namespace moegrad::ag
