// The elementwise kernels behind cuda::map (core/cuda/loops.h): a flat kernel when every operand
// is contiguous, else one that turns the flat index into per-operand offsets through the
// coalesced layout of core/strided_layout.h. Included by core/cuda/elementwise.cu only.
#pragma once
#include <array>
#include <utility>

#include "core/cuda/launch.cuh"
#include "core/cuda/loops.h"
#include "core/strided_layout.h"

namespace moegrad::core::cuda {
namespace detail {

template <std::size_t N> struct Pointers { const void* p[N > 0 ? N : 1]; };

// Kernels may not be variadic over two packs, so the input types travel as one type and this
// unpacks them in device code: f(in[0][off[1]], in[1][off[2]], ...).
template <class... In> struct Inputs {
  template <class F, std::size_t... I>
  __device__ static auto call(const F& f, const Pointers<sizeof...(In)>& in, const std::int64_t* off,
                              std::index_sequence<I...>) {
    return f(static_cast<const In*>(in.p[I])[off[I]]...);
  }
  template <class F>
  __device__ static auto call(const F& f, const Pointers<sizeof...(In)>& in, const std::int64_t* off) {
    return call(f, in, off, std::index_sequence_for<In...>{});
  }
};

template <class Out, class F, class Ins, std::size_t M>
__global__ void map_flat(std::int64_t n, Out* out, F f, Pointers<M> in) {
  MOEGRAD_GRID_STRIDE(i, n) {
    std::int64_t off[M > 0 ? M : 1];
    for (std::size_t k = 0; k + 1 <= M; ++k) off[k] = i;
    out[i] = Ins::call(f, in, off);
  }
}

template <class Out, class F, class Ins, std::size_t M>
__global__ void map_strided(CoalescedLayout<M + 1> L, std::int64_t n, Out* out, F f, Pointers<M> in) {
  MOEGRAD_GRID_STRIDE(i, n) {
    std::int64_t off[M + 1] = {};
    std::int64_t rem = i;
    for (int d = L.ndim - 1; d >= 0; --d) {
      const std::int64_t idx = rem % L.sizes[d];
      rem /= L.sizes[d];
      for (std::size_t k = 0; k <= M; ++k) off[k] += idx * L.strides[k][d];
    }
    out[off[0]] = Ins::call(f, in, off + 1);
  }
}

}  // namespace detail

template <class Out, class... In, class F>
void map(const Tensor& out, const std::array<Tensor, sizeof...(In)>& ins, F f) {
  constexpr std::size_t N = sizeof...(In) + 1;
  const std::int64_t n = out.numel();
  if (n == 0) return;
  detail::Pointers<sizeof...(In)> in{};
  std::array<const Shape*, N> strides{&out.strides()};
  for (std::size_t k = 0; k + 1 <= sizeof...(In); ++k) {
    in.p[k] = ins[k].raw_data();
    strides[k + 1] = &ins[k].strides();
  }
  const auto L = coalesce<N>(out.shape(), strides);
  bool flat = L.ndim == 1;
  for (std::size_t k = 0; k < N && flat; ++k) flat = L.strides[k][0] == 1;
  cudaStream_t st = stream(out.device().index);
  using Ins = detail::Inputs<In...>;
  constexpr std::size_t M = sizeof...(In);
  if (flat)
    detail::map_flat<Out, F, Ins, M><<<blocks_for(n), kThreads, 0, st>>>(n, out.data<Out>(), f, in);
  else
    detail::map_strided<Out, F, Ins, M><<<blocks_for(n), kThreads, 0, st>>>(L, n, out.data<Out>(), f, in);
  MOEGRAD_CUDA_CHECK_LAUNCH("elementwise");
}

}  // namespace moegrad::core::cuda
