// The elementwise kernels behind cuda::map (core/cuda/loops.h): a flat kernel when every operand
// is contiguous, else one that turns the flat index into per-operand offsets through the
// coalesced layout of core/kernels/strided_layout.h. Included by core/cuda/elementwise.cu only.
#pragma once
#include <array>
#include <utility>

#include "core/cuda/launch.cuh"
#include "core/cuda/loops.h"
#include "core/kernels/strided_layout.h"

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

// off[k] = operand k's offset of flat element i of the layout.
template <std::size_t N>
__device__ void offsets_of(const CoalescedLayout<N>& L, std::int64_t i, std::int64_t* off) {
  for (std::size_t k = 0; k < N; ++k) off[k] = 0;
  for (int d = L.ndim - 1; d >= 0; --d) {
    const std::int64_t idx = i % L.sizes[d];
    i /= L.sizes[d];
    for (std::size_t k = 0; k < N; ++k) off[k] += idx * L.strides[k][d];
  }
}

template <class Out, class F, class Ins, std::size_t M>
__global__ void map_strided(CoalescedLayout<M + 1> L, std::int64_t n, Out* out, F f, Pointers<M> in) {
  MOEGRAD_GRID_STRIDE(i, n) {
    std::int64_t off[M + 1];
    offsets_of(L, i, off);
    out[off[0]] = Ins::call(f, in, off + 1);
  }
}

template <class T, std::size_t K> struct Outputs { T* p[K]; };

// K outputs (operands 0..K-1 of L), M inputs after them; each element's inputs are read
// before its outputs are written, so an output may alias an input at the same index.
template <class T, std::size_t K, class F, class Ins, std::size_t M>
__global__ void map_outputs_strided(CoalescedLayout<K + M> L, std::int64_t n, Outputs<T, K> out, F f,
                                    Pointers<M> in) {
  MOEGRAD_GRID_STRIDE(i, n) {
    std::int64_t off[K + M];
    offsets_of(L, i, off);
    const auto r = Ins::call(f, in, off + K);
    for (std::size_t k = 0; k < K; ++k) out.p[k][off[k]] = r.v[k];
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

template <class T, std::size_t K, class... In, class F>
void map_outputs(const std::array<Tensor, K>& outs, const std::array<Tensor, sizeof...(In)>& ins, F f) {
  constexpr std::size_t M = sizeof...(In);
  const std::int64_t n = outs[0].numel();
  if (n == 0) return;
  detail::Outputs<T, K> out{};
  detail::Pointers<M> in{};
  std::array<const Shape*, K + M> strides{};
  for (std::size_t k = 0; k < K; ++k) {
    out.p[k] = outs[k].template data<T>();
    strides[k] = &outs[k].strides();
  }
  for (std::size_t k = 0; k < M; ++k) {
    in.p[k] = ins[k].raw_data();
    strides[K + k] = &ins[k].strides();
  }
  const auto L = coalesce<K + M>(outs[0].shape(), strides);
  detail::map_outputs_strided<T, K, F, detail::Inputs<In...>, M>
      <<<blocks_for(n), kThreads, 0, stream(outs[0].device().index)>>>(L, n, out, f, in);
  MOEGRAD_CUDA_CHECK_LAUNCH("elementwise");
}

}  // namespace moegrad::core::cuda
