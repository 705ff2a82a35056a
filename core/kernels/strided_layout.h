// Iteration layouts shared by the CPU loops (core/cpu/loops.h) and the CUDA elementwise
// kernels (core/cuda/loops.cuh): operands share one iteration shape (inputs already expanded to
// the output's shape); size-1 dims are dropped and contiguous runs merged, so most loops end up
// 1-D and flat.
#pragma once
#include <array>
#include <cstdint>

#include "core/error.h"
#include "core/shape.h"

namespace moegrad::core {

// Shape and per-operand strides after dropping size-1 dims and merging contiguous runs.
template <std::size_t N>
struct CoalescedLayout {
  int ndim = 0;
  std::int64_t sizes[16];
  std::int64_t strides[N][16];
};

template <std::size_t N>
CoalescedLayout<N> coalesce(const Shape& shape, const std::array<const Shape*, N>& strides) {
  CoalescedLayout<N> L;
  for (std::size_t d = 0; d < shape.size(); ++d) {
    if (shape[d] == 1) continue;
    bool merge = L.ndim > 0;
    for (std::size_t k = 0; k < N && merge; ++k)
      merge = L.strides[k][L.ndim - 1] == (*strides[k])[d] * shape[d];
    if (merge) {
      L.sizes[L.ndim - 1] *= shape[d];
      for (std::size_t k = 0; k < N; ++k) L.strides[k][L.ndim - 1] = (*strides[k])[d];
    } else {
      if (L.ndim == 16) throw Error("[cpu loop] more than 16 non-mergeable dims");
      L.sizes[L.ndim] = shape[d];
      for (std::size_t k = 0; k < N; ++k) L.strides[k][L.ndim] = (*strides[k])[d];
      ++L.ndim;
    }
  }
  if (L.ndim == 0) {  // 0-d or all-ones shape: one element
    L.ndim = 1;
    L.sizes[0] = 1;
    for (std::size_t k = 0; k < N; ++k) L.strides[k][0] = 1;
  }
  return L;
}

}  // namespace moegrad::core
