// Shared by the CUDA-vs-CPU tests: the skip when no GPU is present, and element comparisons.
#pragma once
#include <doctest/doctest.h>
#include <fmt/format.h>

#include <cmath>
#include <string>

#include "core/build_info.h"
#include "core/ops.h"

namespace cuda_test {

inline bool present() { return moegrad::core::build_info().cuda_devices > 0; }
inline moegrad::core::Device gpu() { return moegrad::core::Device::cuda(0); }

// Every element: |got - want| <= atol + rtol |want| (NaNs must match); reports the first five.
inline void expect_close(const std::string& what, const moegrad::core::Tensor& want,
                         const moegrad::core::Tensor& got, double atol = 0.0, double rtol = 0.0) {
  namespace core = moegrad::core;
  REQUIRE_MESSAGE(got.shape() == want.shape(), what, ": shape ", core::shape_str(got.shape()), " vs ",
                  core::shape_str(want.shape()));
  REQUIRE_MESSAGE(got.dtype() == want.dtype(), what, ": ", core::describe(got), " vs ", core::describe(want));
  const auto w = want.to_vector<double>();
  const auto g = got.to_vector<double>();
  int reported = 0;
  for (std::size_t i = 0; i < w.size(); ++i) {
    const bool ok = (std::isnan(w[i]) && std::isnan(g[i])) || w[i] == g[i] ||
                    std::abs(g[i] - w[i]) <= atol + rtol * std::abs(w[i]);
    if (!ok && reported++ < 5) FAIL_CHECK(fmt::format("{} element {}: cuda {:.10g} vs cpu {:.10g}", what, i, g[i], w[i]));
  }
}

}  // namespace cuda_test

// First line of every CUDA test case: CI has no GPU, so the case passes with a message there.
#define SKIP_WITHOUT_CUDA()                      \
  do {                                           \
    if (!cuda_test::present()) {                 \
      MESSAGE("skipped: no CUDA device");        \
      return;                                    \
    }                                            \
  } while (0)
