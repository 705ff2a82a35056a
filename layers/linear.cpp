#include "layers/linear.h"

#include <cmath>

#include "layers/check.h"
#include "layers/init.h"

namespace moegrad::nn {

Linear::Linear(std::int64_t in_features, std::int64_t out_features, bool bias, TensorOptions options,
               core::Generator* gen)
    : in_(in_features), out_(out_features), has_bias_(bias) {
  MOEGRAD_CHECK(in_features > 0 && out_features > 0, "Linear", "in_features and out_features must be > 0, got {} and {}",
                in_features, out_features);
  const double w_bound = init::kaiming_uniform_bound(in_features, std::sqrt(5.0));
  register_parameter("weight", core::uniform({out_features, in_features}, -w_bound, w_bound, options, gen));
  if (bias) {
    const double b_bound = 1.0 / std::sqrt(static_cast<double>(in_features));
    register_parameter("bias", core::uniform({out_features}, -b_bound, b_bound, options, gen));
  }
}

Variable Linear::forward(const Variable& x) {
  const Variable& w = weight();
  check_input("Linear", x, w.value());
  check_last_dim("Linear", x, in_, "in_features");
  const Variable wt = ag::transpose(w, 0, 1);  // [in, out], a view
  Variable y;
  if (x.dim() <= 2) {
    y = ag::matmul(x, wt);
  } else {
    Shape out_shape = x.shape();
    out_shape.back() = out_;
    y = ag::reshape(ag::matmul(ag::reshape(x, {-1, in_}), wt), out_shape);
  }
  return has_bias_ ? ag::add(y, bias()) : y;
}

std::string Linear::extra_repr() const {
  return fmt::format("in_features={}, out_features={}, bias={}", in_, out_, py_bool(has_bias_));
}

}  // namespace moegrad::nn
