// The CUDA counterpart of core/cpu/loops.h: out[i] = f(ins[0][i], ...) on the GPU, for the
// functors of core/kernels/scalar_math.h. A template whose kernels nvcc must compile: the (Out, In...,
// F) combinations the ops use are instantiated in core/cuda/elementwise.cu (a missing one is a
// link error). Without CUDA nothing instantiates them: run_map (core/ops/map.h) takes the
// generic "built without CUDA" path of core/backend.h.
#pragma once
#include <array>

#include "core/tensor.h"

namespace moegrad::core::cuda {

template <class Out, class... In, class F>
void map(const Tensor& out, const std::array<Tensor, sizeof...(In)>& ins, F f);
template <class T, std::size_t K, class... In, class F>
void map_outputs(const std::array<Tensor, K>& outs, const std::array<Tensor, sizeof...(In)>& ins, F f);

}  // namespace moegrad::core::cuda
