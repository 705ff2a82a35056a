// Runs an elementwise functor of core/kernels/scalar_math.h on the output's device: the CPU loop
// of core/cpu/loops.h or the CUDA kernel of core/cuda/loops.h (instantiated per functor in
// core/cuda/elementwise.cu), chosen by run_on (core/backend.h). The one place an
// elementwise op picks its backend.
#pragma once
#include <array>

#include "core/cpu/loops.h"
#include "core/cuda/loops.h"
#include "core/backend.h"

namespace moegrad::core {

template <class Out, class... In, class F>
void run_map(const Tensor& out, const std::array<Tensor, sizeof...(In)>& ins, F f) {
  run_on(
      "map", out.device(), [&](auto) { cpu::map<Out, In...>(out, ins, f); },
      [&](auto) { cuda::map<Out, In...>(out, ins, f); });
}

// Several outputs of one type T from one pass: f returns math::Values<T, K>.
template <class T, std::size_t K, class... In, class F>
void run_map_outputs(const std::array<Tensor, K>& outs, const std::array<Tensor, sizeof...(In)>& ins, F f) {
  run_on(
      "map", outs[0].device(), [&](auto) { cpu::map_outputs<T, K, In...>(outs, ins, f); },
      [&](auto) { cuda::map_outputs<T, K, In...>(outs, ins, f); });
}

}  // namespace moegrad::core
