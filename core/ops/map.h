// Runs an elementwise functor of core/kernels/scalar_math.h on the output's device: the CPU loop of
// core/cpu/loops.h or the CUDA kernel of core/cuda/loops.h. The one place an elementwise op
// picks its backend.
#pragma once
#include <array>

#include "core/cpu/loops.h"
#include "core/cuda/loops.h"

namespace moegrad::core {

template <class Out, class... In, class F>
void run_map(const Tensor& out, const std::array<Tensor, sizeof...(In)>& ins, F f) {
  if (out.device().is_cuda())
    cuda::map<Out, In...>(out, ins, f);
  else
    cpu::map<Out, In...>(out, ins, f);
}

// Several outputs of one type T from one pass: f returns math::Values<T, K>.
template <class T, std::size_t K, class... In, class F>
void run_map_outputs(const std::array<Tensor, K>& outs, const std::array<Tensor, sizeof...(In)>& ins, F f) {
  if (outs[0].device().is_cuda())
    cuda::map_outputs<T, K, In...>(outs, ins, f);
  else
    cpu::map_outputs<T, K, In...>(outs, ins, f);
}

}  // namespace moegrad::core
