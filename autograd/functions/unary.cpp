// Unary elementwise ops. Each backward saves the input or the output, whichever the
// derivative is cheaper in.
#include "autograd/functions.h"
#include "autograd/node.h"
#include "autograd/registry.h"

namespace moegrad::ag {

MOEGRAD_DIFFERENTIABLE("neg", "exp", "log", "sqrt", "rsqrt", "abs", "square", "tanh", "sigmoid", "relu",
                       "leaky_relu", "gelu", "gelu_tanh", "silu", "geglu");

using core::mul;

Variable neg(const Variable& x) {
  return record("neg", core::neg(x.value()), {x}, [](const Tensor& gy, const Needs&) { return Grads{core::neg(gy)}; });
}

Variable exp(const Variable& x) {
  Tensor y = core::exp(x.value());
  return record("exp", y, {x}, [y](const Tensor& gy, const Needs&) { return Grads{mul(gy, y)}; });
}

Variable log(const Variable& x) {
  return record("log", core::log(x.value()), {x},
                [X = x.value()](const Tensor& gy, const Needs&) { return Grads{core::div(gy, X)}; });
}

Variable sqrt(const Variable& x) {
  Tensor y = core::sqrt(x.value());
  return record("sqrt", y, {x}, [y](const Tensor& gy, const Needs&) { return Grads{core::div(gy, mul(y, 2.0))}; });
}

Variable rsqrt(const Variable& x) {
  Tensor y = core::rsqrt(x.value());  // d/dx x^-1/2 = -y³/2
  return record("rsqrt", y, {x}, [y](const Tensor& gy, const Needs&) {
    return Grads{mul(gy, mul(core::mul(core::square(y), y), -0.5))};
  });
}

Variable abs(const Variable& x) {
  return record("abs", core::abs(x.value()), {x},
                [X = x.value()](const Tensor& gy, const Needs&) { return Grads{mul(gy, core::sign(X))}; });
}

Variable square(const Variable& x) {
  return record("square", core::square(x.value()), {x},
                [X = x.value()](const Tensor& gy, const Needs&) { return Grads{mul(gy, mul(X, 2.0))}; });
}

Variable tanh(const Variable& x) {
  Tensor y = core::tanh(x.value());
  return record("tanh", y, {x}, [y](const Tensor& gy, const Needs&) {
    return Grads{mul(gy, core::rsub(core::square(y), 1.0))};  // 1 - y²
  });
}

Variable sigmoid(const Variable& x) {
  Tensor y = core::sigmoid(x.value());
  return record("sigmoid", y, {x}, [y](const Tensor& gy, const Needs&) {
    return Grads{mul(gy, mul(y, core::rsub(y, 1.0)))};  // y(1-y)
  });
}

Variable relu(const Variable& x) {
  // Saves the output, not the input (y > 0 exactly where x > 0): the next op (an expert's second
  // GEMM) saves the same tensor, so the input can be freed after the forward.
  Tensor y = core::relu(x.value());
  return record("relu", y, {x}, [Y = y](const Tensor& gy, const Needs&) {
    // gy where y > 0, else gy * 0: one pass, no mask, written into gy's buffer when it is ours alone
    return Grads{core::leaky_relu_backward(gy, Y, 0.0, reusable_buffer(gy))};
  });
}

Variable leaky_relu(const Variable& x, double slope) {
  return record("leaky_relu", core::leaky_relu(x.value(), slope), {x}, [X = x.value(), slope](const Tensor& gy, const Needs&) {
    return Grads{core::leaky_relu_backward(gy, X, slope, reusable_buffer(gy))};
  });
}

Variable gelu(const Variable& x) {
  return record("gelu", core::gelu(x.value()), {x},
                [X = x.value()](const Tensor& gy, const Needs&) {
                  return Grads{core::gelu_backward(gy, X, reusable_buffer(gy))};
                });
}

Variable gelu_tanh(const Variable& x) {
  return record("gelu_tanh", core::gelu_tanh(x.value()), {x},
                [X = x.value()](const Tensor& gy, const Needs&) {
                  return Grads{core::gelu_tanh_backward(gy, X, reusable_buffer(gy))};
                });
}

Variable geglu(const Variable& h, const Variable& mult) {
  return record("geglu", core::geglu(h.value(), mult.value()), {h, mult},
                [H = h.value(), M = mult.value()](const Tensor& gy, const Needs& need) {
                  // The saved pre-activation and the incoming gradient die here: when nothing else
                  // holds them, d h is written over h and d mult over gy (no new [R, 2H] and [R, H]).
                  const bool same_dtype = H.dtype() == M.dtype() && gy.dtype() == H.dtype();
                  const Tensor dh_out = need[0] && same_dtype && H.owns_whole_storage() ? H : Tensor{};
                  const Tensor dmult_out = need[1] && same_dtype ? reusable_buffer(gy) : Tensor{};
                  auto g = core::geglu_backward(gy, H, M, need[0], need[1], dh_out, dmult_out);
                  return Grads{g[0], g[1]};  // d mult at the broadcast shape; the engine sums it to mult's
                });
}

Variable silu(const Variable& x) {
  return record("silu", core::silu(x.value()), {x},
                [X = x.value()](const Tensor& gy, const Needs&) {
                  return Grads{core::silu_backward(gy, X, reusable_buffer(gy))};
                });
}

}  // namespace moegrad::ag
