#include "layers/check.h"

namespace moegrad::nn {

void check_input(const char* module, const ag::Variable& x, const core::Tensor& like, std::int64_t min_dim) {
  MOEGRAD_CHECK(x.defined(), module, "input is undefined");
  const core::Tensor& v = x.value();
  MOEGRAD_CHECK(v.dim() >= min_dim, module, "input needs at least {} dim{}: {}", min_dim, min_dim == 1 ? "" : "s",
                core::describe(v));
  MOEGRAD_CHECK(v.dtype() == like.dtype(), module, "input dtype {} != parameter dtype {}: {}",
                core::dtype_name(v.dtype()), core::dtype_name(like.dtype()), core::describe(v));
  MOEGRAD_CHECK(v.device() == like.device(), module, "input on {} but parameters on {}", v.device().str(),
                like.device().str());
}

void check_last_dim(const char* module, const ag::Variable& x, std::int64_t expected, const char* what) {
  const core::Tensor& v = x.value();
  MOEGRAD_CHECK(v.dim() >= 1 && v.size(-1) == expected, module, "input last dim {} != {} {}: {}",
                v.dim() >= 1 ? v.size(-1) : 0, what, expected, core::describe(v));
}

}  // namespace moegrad::nn
