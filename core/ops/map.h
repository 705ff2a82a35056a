// Runs an elementwise functor of core/scalar_math.h on the output's device: the CPU loop of
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

}  // namespace moegrad::core
