// MOEGRAD_HD marks scalar functions callable from CPU loops and CUDA kernels alike.
#pragma once

#ifdef __CUDACC__
#define MOEGRAD_HD __host__ __device__ inline
#else
#define MOEGRAD_HD inline
#endif

namespace moegrad::core::math {

// The K results of a multi-output elementwise functor (core::run_map_outputs), one per output.
template <class T, int K> struct Values {
  T v[K];
};

}  // namespace moegrad::core::math
