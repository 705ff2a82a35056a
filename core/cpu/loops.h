// Strided elementwise loops for CPU kernels. Operands share one iteration shape (inputs
// already expanded to the output's shape); dims are coalesced, the all-contiguous case is a
// flat vectorisable loop, and large loops run OpenMP-parallel.
#pragma once
#include <omp.h>

#include <array>
#include <cstdint>
#include <utility>

#include "core/strided_layout.h"
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
template <class Out, class F, class... In>
void flat_range(Out* out, std::int64_t i0, std::int64_t i1, F& f, const In*... in) {
#pragma omp simd
  for (std::int64_t i = i0; i < i1; ++i) out[i] = f(in[i]...);
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

  // General case: rows of the innermost dim, each thread walking a contiguous range of rows
  // with an incremented multi-index.
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
    std::int64_t rem = r0;
    for (int d = last - 1; d >= 0; --d) {
      idx[d] = rem % L.sizes[d];
      rem /= L.sizes[d];
      for (std::size_t k = 0; k < N; ++k) off[k] += idx[d] * L.strides[k][d];
    }
    const std::int64_t si[N] = {L.strides[0][last], L.strides[I + 1][last]...};
    for (std::int64_t r = r0; r < r1; ++r) {
      Out* o = out_ptr + off[0];
      for (std::int64_t j = 0; j < inner; ++j)
        o[j * si[0]] = f((std::get<I>(in_ptrs) + off[I + 1])[j * si[I + 1]]...);
      for (int d = last - 1; d >= 0; --d) {  // advance the multi-index
        for (std::size_t k = 0; k < N; ++k) off[k] += L.strides[k][d];
        if (++idx[d] < L.sizes[d]) break;
        for (std::size_t k = 0; k < N; ++k) off[k] -= L.strides[k][d] * L.sizes[d];
        idx[d] = 0;
      }
    }
  }
}

}  // namespace detail

// out[i] = f(ins[0][i], ins[1][i], ...) over out's shape; each input must already have out's
// shape (use expand for broadcasting). Out and In... are the element types.
template <class Out, class... In, class F>
void map(const Tensor& out, const std::array<Tensor, sizeof...(In)>& ins, F f) {
  detail::map_impl<Out, In...>(out, ins, f, std::index_sequence_for<In...>{});
}

}  // namespace moegrad::core::cpu
