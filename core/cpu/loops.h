// Strided elementwise loops for CPU kernels. Operands share one iteration shape (inputs
// already expanded to the output's shape); dims are coalesced, the all-contiguous case is a
// flat vectorisable loop, and large loops run OpenMP-parallel.
#pragma once
#include <omp.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <tuple>
#include <utility>

#include "core/cpu/vector_isa.h"
#include "core/kernels/strided_layout.h"
#include "core/tensor.h"

namespace moegrad::core::cpu {

// Below this many elements a loop stays on one thread (thread start-up costs more).
constexpr std::int64_t kParallelGrain = 32768;

inline int threads_for(std::int64_t work) {
  return work >= kParallelGrain ? omp_get_max_threads() : 1;
}

namespace detail {

// A dense range [i0, i1): pointers arrive by value, so the compiler sees locals it can keep
// in registers and vectorise over (read through a shared tuple, they would be reloaded
// every iteration).
// The loop is built for baseline x86-64 and for AVX2 (core/cpu/vector_isa.h).
template <class Out, class F, class... In>
void flat_range(Out* out, std::int64_t i0, std::int64_t i1, F& f, const In*... in) {
  call_vectorised([&]() MOEGRAD_VECTOR_BODY {
#pragma omp simd
    for (std::int64_t i = i0; i < i1; ++i) out[i] = f(in[i]...);
  });
}

// Calls row(off, step, inner) for each run of the innermost coalesced dim, threads taking
// contiguous ranges of runs: off[k] is operand k's offset of the run's first element, step[k]
// its innermost stride.
template <std::size_t N, class Row>
void for_each_row(const CoalescedLayout<N>& L, std::int64_t n, const Row& row) {
  const int last = L.ndim - 1;
  const std::int64_t inner = L.sizes[last];
  const std::int64_t rows = n / inner;
  const int nthreads = threads_for(n);
#pragma omp parallel num_threads(nthreads) if (nthreads > 1)
  {
    const int t = omp_get_thread_num(), T = omp_get_num_threads();
    const std::int64_t r0 = rows * t / T, r1 = rows * (t + 1) / T;
    std::int64_t idx[16] = {0};
    std::int64_t off[N] = {0};
    std::int64_t step[N];
    std::int64_t rem = r0;
    for (int d = last - 1; d >= 0; --d) {
      idx[d] = rem % L.sizes[d];
      rem /= L.sizes[d];
      for (std::size_t k = 0; k < N; ++k) off[k] += idx[d] * L.strides[k][d];
    }
    for (std::size_t k = 0; k < N; ++k) step[k] = L.strides[k][last];
    for (std::int64_t r = r0; r < r1; ++r) {
      row(off, step, inner);
      for (int d = last - 1; d >= 0; --d) {  // advance the multi-index
        for (std::size_t k = 0; k < N; ++k) off[k] += L.strides[k][d];
        if (++idx[d] < L.sizes[d]) break;
        for (std::size_t k = 0; k < N; ++k) off[k] -= L.strides[k][d] * L.sizes[d];
        idx[d] = 0;
      }
    }
  }
}

// Rows whose operands are contiguous or broadcast along the innermost dim (step 1 or 0: a
// bias, a per-row scale expanded over [rows, H]) run the vectorised flat loops on chunks of at
// most kStageLen elements, each broadcast operand's value repeated into a stack buffer.
constexpr std::int64_t kStageLen = 256;

inline bool unit_or_broadcast(const std::int64_t* step, std::size_t n) {
  for (std::size_t k = 0; k < n; ++k)
    if (step[k] != 0 && step[k] != 1) return false;
  return true;
}

// Uninitialised stack buffers, one per input (a std::tuple of arrays would zero them per row).
template <std::size_t I, class T> struct StageBuf {
  T v[kStageLen];
};
template <class Seq, class... In> struct StageBufs;
template <std::size_t... I, class... In>
struct StageBufs<std::index_sequence<I...>, In...> : StageBuf<I, In>... {};
template <std::size_t I, class T> T* stage_buf(StageBuf<I, T>& b) { return b.v; }

// p itself when step is 1, else buf holding len copies of *p (step 0).
template <class T> const T* staged(const T* p, std::int64_t step, std::int64_t len, T* buf) {
  if (step == 1) return p;
  for (std::int64_t j = 0; j < len; ++j) buf[j] = *p;
  return buf;
}

// One row of `inner` elements whose inputs start at in[I] with steps step[I] (each 0 or 1):
// chunk(j0, len, p...) for each run [j0, j0 + len) of at most kStageLen, p[I] pointing at input
// I's elements j0.. or at a buffer repeating its value.
template <class... In, std::size_t... I, class Chunk>
void for_each_staged_chunk(std::index_sequence<I...>, const std::tuple<const In*...>& in, const std::int64_t* step,
                           std::int64_t inner, const Chunk& chunk) {
  [[maybe_unused]] StageBufs<std::index_sequence<I...>, In...> bufs;
  for (std::int64_t j0 = 0; j0 < inner; j0 += kStageLen) {
    const std::int64_t len = std::min(kStageLen, inner - j0);
    chunk(j0, len, staged(std::get<I>(in) + j0 * step[I], step[I], len, stage_buf<I>(bufs))...);
  }
}

// The same for K outputs over contiguous runs. Outputs may alias inputs only at the same index,
// which the simd loop allows (each lane reads its inputs before writing its outputs).
template <class T, std::size_t K, class F, class... In>
void flat_range_outputs(std::array<T*, K> out, std::int64_t i0, std::int64_t i1, F& f, const In*... in) {
  call_vectorised([&]() MOEGRAD_VECTOR_BODY {
#pragma omp simd
    for (std::int64_t i = i0; i < i1; ++i) {
      const auto r = f(in[i]...);
      for (std::size_t k = 0; k < K; ++k) out[k][i] = r.v[k];
    }
  });
}

template <class Out, class... In, class F, std::size_t... I>
void map_impl(const Tensor& out, const std::array<Tensor, sizeof...(In)>& ins, F& f,
              std::index_sequence<I...>) {
  constexpr std::size_t N = sizeof...(In) + 1;
  const std::int64_t n = out.numel();
  if (n == 0) return;
  Out* out_ptr = out.data<Out>();
  std::tuple<const In*...> in_ptrs{ins[I].template data<In>()...};
  const auto L = coalesce<N>(out.shape(), {&out.strides(), &ins[I].strides()...});

  bool flat = L.ndim == 1 && L.strides[0][0] == 1;
  for (std::size_t k = 1; k < N && flat; ++k) flat = L.strides[k][0] == 1;
  if (flat) {
    const int nthreads = threads_for(n);
#pragma omp parallel num_threads(nthreads) if (nthreads > 1)
    {
      const int t = omp_get_thread_num(), T = omp_get_num_threads();
      flat_range(out_ptr, n * t / T, n * (t + 1) / T, f, std::get<I>(in_ptrs)...);
    }
    return;
  }

  // General case: rows of the innermost dim; rows contiguous in every operand (row slices such as
  // the halves of a chunked tensor) take the vectorised flat loop.
  // The innermost steps are the same for every row: decide the row loop once.
  std::int64_t last_step[N];
  for (std::size_t k = 0; k < N; ++k) last_step[k] = L.strides[k][L.ndim - 1];
  bool unit = true;
  for (std::size_t k = 0; k < N; ++k) unit = unit && last_step[k] == 1;
  const bool stage = !unit && last_step[0] == 1 && unit_or_broadcast(last_step + 1, N - 1);
  for_each_row<N>(L, n, [&](const std::int64_t* off, const std::int64_t* step, std::int64_t inner) {
    Out* o = out_ptr + off[0];
    if (unit) {
      flat_range(o, 0, inner, f, (std::get<I>(in_ptrs) + off[I + 1])...);
    } else if (stage) {
      for_each_staged_chunk(std::index_sequence<I...>{}, std::tuple<const In*...>{std::get<I>(in_ptrs) + off[I + 1]...},
                            step + 1, inner, [&](std::int64_t j0, std::int64_t len, const In*... p) {
                              flat_range(o + j0, 0, len, f, p...);
                            });
    } else {
      for (std::int64_t j = 0; j < inner; ++j) o[j * step[0]] = f((std::get<I>(in_ptrs) + off[I + 1])[j * step[I + 1]]...);
    }
  });
}

// K outputs of one element type T: f returns math::Values<T, K>. An output may be an input's
// memory at the same index (each element's inputs are read before its outputs are written).
template <class T, std::size_t K, class... In, class F, std::size_t... I>
void map_outputs_impl(const std::array<Tensor, K>& outs, const std::array<Tensor, sizeof...(In)>& ins, F& f,
                      std::index_sequence<I...>) {
  constexpr std::size_t N = K + sizeof...(In);
  const std::int64_t n = outs[0].numel();
  if (n == 0) return;
  std::array<T*, K> out_ptrs;
  std::array<const Shape*, N> strides;
  for (std::size_t k = 0; k < K; ++k) {
    out_ptrs[k] = outs[k].template data<T>();
    strides[k] = &outs[k].strides();
  }
  ((strides[K + I] = &ins[I].strides()), ...);
  const std::tuple<const In*...> in_ptrs{ins[I].template data<In>()...};
  const auto L = coalesce<N>(outs[0].shape(), strides);
  const auto unit_run = [&](const std::int64_t* off, std::int64_t i0, std::int64_t i1) {
    std::array<T*, K> o;
    for (std::size_t k = 0; k < K; ++k) o[k] = out_ptrs[k] + off[k];
    flat_range_outputs<T, K>(o, i0, i1, f, (std::get<I>(in_ptrs) + off[K + I])...);
  };
  std::int64_t last_step[N];  // the same for every row: decide the row loop once
  for (std::size_t k = 0; k < N; ++k) last_step[k] = L.strides[k][L.ndim - 1];
  bool unit = true;  // every operand contiguous along the innermost dim
  for (std::size_t k = 0; k < N; ++k) unit = unit && last_step[k] == 1;
  bool outs_unit = true;
  for (std::size_t k = 0; k < K; ++k) outs_unit = outs_unit && last_step[k] == 1;
  const bool stage = !unit && outs_unit && unit_or_broadcast(last_step + K, sizeof...(In));
  if (unit && L.ndim == 1) {  // one contiguous run: split it over the threads
    const int nthreads = threads_for(n);
    const std::int64_t zero[N] = {};
#pragma omp parallel num_threads(nthreads) if (nthreads > 1)
    {
      const int t = omp_get_thread_num(), T_ = omp_get_num_threads();
      unit_run(zero, n * t / T_, n * (t + 1) / T_);
    }
    return;
  }
  for_each_row<N>(L, n, [&](const std::int64_t* off, const std::int64_t* step, std::int64_t inner) {
    if (unit) {
      unit_run(off, 0, inner);
      return;
    }
    if (stage) {
      for_each_staged_chunk(std::index_sequence<I...>{}, std::tuple<const In*...>{std::get<I>(in_ptrs) + off[K + I]...},
                            step + K, inner, [&](std::int64_t j0, std::int64_t len, const In*... p) {
                              std::array<T*, K> o;
                              for (std::size_t k = 0; k < K; ++k) o[k] = out_ptrs[k] + off[k] + j0;
                              flat_range_outputs<T, K>(o, 0, len, f, p...);
                            });
      return;
    }
    for (std::int64_t j = 0; j < inner; ++j) {
      const auto r = f((std::get<I>(in_ptrs) + off[K + I])[j * step[K + I]]...);
      for (std::size_t k = 0; k < K; ++k) out_ptrs[k][off[k] + j * step[k]] = r.v[k];
    }
  });
}

}  // namespace detail

// out[i] = f(ins[0][i], ins[1][i], ...) over out's shape; each input must already have out's
// shape (use expand for broadcasting). Out and In... are the element types.
template <class Out, class... In, class F>
void map(const Tensor& out, const std::array<Tensor, sizeof...(In)>& ins, F f) {
  detail::map_impl<Out, In...>(out, ins, f, std::index_sequence_for<In...>{});
}

// {outs[0][i], ..., outs[K-1][i]} = f(ins[0][i], ...).v over outs[0]'s shape (all outputs and
// inputs of that shape, outputs of type T). An output may alias an input at the same index.
template <class T, std::size_t K, class... In, class F>
void map_outputs(const std::array<Tensor, K>& outs, const std::array<Tensor, sizeof...(In)>& ins, F f) {
  detail::map_outputs_impl<T, K, In...>(outs, ins, f, std::index_sequence_for<In...>{});
}

}  // namespace moegrad::core::cpu
