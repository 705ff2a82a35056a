// The CUDA counterpart of core/cpu/loops.h: out[i] = f(ins[0][i], ...) on the GPU, for the
// functors of core/kernels/scalar_math.h. A template whose kernels nvcc must compile: the (Out, In...,
// F) combinations the ops use are instantiated in core/cuda/elementwise.cu (a missing one is a
// link error). Without CUDA the definition below throws (no CUDA tensor can exist then).
#pragma once
#include <array>

#include "core/tensor.h"

namespace moegrad::core::cuda {

#ifdef MOEGRAD_WITH_CUDA
template <class Out, class... In, class F>
void map(const Tensor& out, const std::array<Tensor, sizeof...(In)>& ins, F f);
template <class T, std::size_t K, class... In, class F>
void map_outputs(const std::array<Tensor, K>& outs, const std::array<Tensor, sizeof...(In)>& ins, F f);
#else
template <class Out, class... In, class F>
void map(const Tensor& out, const std::array<Tensor, sizeof...(In)>&, F) {
  fail("cuda", "elementwise kernel on {}: moegrad was built without CUDA", out.device().str());
}
template <class T, std::size_t K, class... In, class F>
void map_outputs(const std::array<Tensor, K>& outs, const std::array<Tensor, sizeof...(In)>&, F) {
  fail("cuda", "elementwise kernel on {}: moegrad was built without CUDA", outs[0].device().str());
}
#endif

}  // namespace moegrad::core::cuda
