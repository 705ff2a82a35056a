// The CPU loop behind the fused in-place updates of core/ops/fused_update.h: one pass over
// contiguous buffers of n elements, calling f(ptrs[i]...) per element (a functor of
// core/kernels/fused_update_math.h), OpenMP-parallel above kParallelGrain elements like
// core/cpu/loops.h. Elements are independent, so the result does not depend on the thread
// count.
#pragma once
#include <cstdint>

#include "core/cpu/loops.h"

namespace moegrad::core::cpu {

template <class F, class... P>
void for_each_element(std::int64_t n, const F& f, P*... ptrs) {
  const int nthreads = threads_for(n);
#pragma omp parallel for simd num_threads(nthreads) if (nthreads > 1) schedule(static)
  for (std::int64_t i = 0; i < n; ++i) f(ptrs[i]...);
}

}  // namespace moegrad::core::cpu
