// Shared by the tests of fused autograd ops against the unfused graphs they replace: every
// element |got - want| <= atol + rtol |want|, shapes and dtypes equal; reports the first five.
#pragma once
#include <doctest/doctest.h>

#include <cmath>

#include "core/tensor.h"

namespace fused_test {

inline void expect_close(const char* what, const moegrad::core::Tensor& got, const moegrad::core::Tensor& want,
                         double atol, double rtol) {
  INFO(what);
  REQUIRE(got.shape() == want.shape());
  REQUIRE(got.dtype() == want.dtype());
  const auto g = got.to_vector<double>(), w = want.to_vector<double>();
  int bad = 0;
  for (std::size_t i = 0; i < g.size(); ++i)
    if (!(std::abs(g[i] - w[i]) <= atol + rtol * std::abs(w[i])) && bad++ < 5)
      FAIL_CHECK("element ", i, ": fused ", g[i], " vs unfused ", w[i]);
  CHECK(bad == 0);
}

}  // namespace fused_test
