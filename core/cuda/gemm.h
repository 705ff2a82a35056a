// GEMM on row-major strided matrices through cuBLAS, the CUDA twin of core/cpu/blas_gemm.h
// (same RowMajorGemm description, same row-major -> column-major swap, to_col_major). Pointers
// are device pointers on `device`; offsets are host arrays in elements. Uniform offset steps
// (the common case: contiguous batches, or a broadcast operand with step 0) become one
// cublas<t>gemmStridedBatched call; other batches one call per product. f32 uses TF32 tensor
// cores only when cuda::allow_tf32() is set. Runs on the device's stream; no synchronisation.
#pragma once
#include <cstdint>

#include "core/kernels/gemm.h"

namespace moegrad::core::cuda {

template <class T>
void gemm_strided(const RowMajorGemm& g, T alpha, const T* a, const T* b, T beta, T* c,
                  std::int64_t batch, const std::int64_t* a_off, const std::int64_t* b_off,
                  const std::int64_t* c_off, int device);

extern template void gemm_strided<float>(const RowMajorGemm&, float, const float*, const float*,
                                         float, float*, std::int64_t, const std::int64_t*,
                                         const std::int64_t*, const std::int64_t*, int);
extern template void gemm_strided<double>(const RowMajorGemm&, double, const double*,
                                          const double*, double, double*, std::int64_t,
                                          const std::int64_t*, const std::int64_t*,
                                          const std::int64_t*, int);

}  // namespace moegrad::core::cuda
