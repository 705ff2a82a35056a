// The GEMM under core/ops (matmul, the grouped MoE GEMMs), on the operands' device:
// cpu::gemm_strided (OpenBLAS) or cuda::gemm_strided (cuBLAS), one description (RowMajorGemm)
// and one batch convention for both (core/cpu/blas_gemm.h).
#pragma once
#include <cstdint>

#include "core/cpu/blas_gemm.h"
#include "core/cuda/gemm.h"
#include "core/device.h"

namespace moegrad::core {

template <class T>
void gemm(Device device, const cpu::RowMajorGemm& g, T alpha, const T* a, const T* b, T beta, T* c,
          std::int64_t batch, const std::int64_t* a_off, const std::int64_t* b_off, const std::int64_t* c_off) {
  if (device.is_cuda())
    cuda::gemm_strided<T>(g, alpha, a, b, beta, c, batch, a_off, b_off, c_off, device.index);
  else
    cpu::gemm_strided<T>(g, alpha, a, b, beta, c, batch, a_off, b_off, c_off);
}

}  // namespace moegrad::core
