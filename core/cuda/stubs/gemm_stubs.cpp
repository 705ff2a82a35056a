// CPU-only build: cuBLAS GEMMs do not exist.
#include "core/cuda/gemm.h"
#include "core/error.h"

namespace moegrad::core::cuda {

template <class T>
void gemm_strided(const RowMajorGemm&, T, const T*, const T*, T, T*, std::int64_t, const std::int64_t*,
                  const std::int64_t*, const std::int64_t*, int device) {
  fail("matmul", "cuBLAS GEMM on cuda:{}: moegrad was built without CUDA", device);
}
template void gemm_strided<float>(const RowMajorGemm&, float, const float*, const float*, float, float*,
                                  std::int64_t, const std::int64_t*, const std::int64_t*, const std::int64_t*, int);
template void gemm_strided<double>(const RowMajorGemm&, double, const double*, const double*, double,
                                   double*, std::int64_t, const std::int64_t*, const std::int64_t*,
                                   const std::int64_t*, int);

}  // namespace moegrad::core::cuda
