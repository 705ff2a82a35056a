// MOEGRAD_HD marks scalar functions callable from CPU loops and CUDA kernels alike.
#pragma once

#ifdef __CUDACC__
#define MOEGRAD_HD __host__ __device__ inline
#else
#define MOEGRAD_HD inline
#endif
