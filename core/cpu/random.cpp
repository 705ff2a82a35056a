// The CPU's RandomKernels tables (core/kernels/random.h): Philox blocks split over OpenMP
// threads; every element is a pure function of (seed, block, lane), so results do not depend on
// the thread count. The device index is unused.
#include <omp.h>

#include <algorithm>
#include <cstdint>

#include "core/cpu/loops.h"
#include "core/kernels/philox.h"
#include "core/kernels/random.h"
#include "core/kernels/rng_math.h"

namespace moegrad::core::cpu {
namespace {

// out[i] = f(U_i) for i in [0, n), U_i drawn from block `first` on: f32 element i = lane i%4
// of block first + i/4; f64 element i = lanes 2(i%2), 2(i%2)+1 of block first + i/2.
template <class T, class F>
void fill_uniform(T* out, std::int64_t n, std::uint64_t seed, std::uint64_t first, F f, int) {
  constexpr std::int64_t per = math::uniforms_per_block<T>;
  const std::int64_t nblocks = (n + per - 1) / per;
#pragma omp parallel for schedule(static) num_threads(threads_for(n)) if (n >= kParallelGrain)
  for (std::int64_t bi = 0; bi < nblocks; ++bi) {
    const PhiloxBlock blk = Philox4x32::block(seed, first + static_cast<std::uint64_t>(bi));
    const std::int64_t base = bi * per;
    const std::int64_t cnt = std::min<std::int64_t>(per, n - base);
    for (std::int64_t j = 0; j < cnt; ++j) out[base + j] = f(math::block_uniform<T>(blk, static_cast<int>(j)));
  }
}

template <class T>
void fill_normal(T* out, std::int64_t n, std::uint64_t seed, std::uint64_t first, int) {
#pragma omp parallel for schedule(static) num_threads(threads_for(n)) if (n >= kParallelGrain)
  for (std::int64_t i = 0; i < n; ++i)
    out[i] = math::block_normal<T>(Philox4x32::block(seed, first + static_cast<std::uint64_t>(i)));
}

}  // namespace
}  // namespace moegrad::core::cpu

namespace moegrad::core {

template <class T>
const RandomKernels<T> RandomKernels<T>::cpu = {&cpu::fill_uniform<T, math::UniformUnit>,
                                                &cpu::fill_uniform<T, math::UniformRange<T>>,
                                                &cpu::fill_uniform<T, math::GumbelFromUniform>, &cpu::fill_normal<T>};
template const RandomKernels<float> RandomKernels<float>::cpu;
template const RandomKernels<double> RandomKernels<double>::cpu;

}  // namespace moegrad::core
