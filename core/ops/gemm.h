// The GEMM under core/ops (matmul, the grouped MoE GEMMs), on the operands' device:
// cpu::gemm_strided (OpenBLAS) or cuda::gemm_strided (cuBLAS), one description (RowMajorGemm)
// and one batch convention for both (core/cpu/blas_gemm.h).
#pragma once
#include <cstdint>
#include <map>
#include <vector>

#include "core/cpu/blas_gemm.h"
#include "core/cuda/gemm.h"
#include "core/device.h"

namespace moegrad::core {

template <class T>
void gemm(Device device, const RowMajorGemm& g, T alpha, const T* a, const T* b, T beta, T* c,
          std::int64_t batch, const std::int64_t* a_off, const std::int64_t* b_off, const std::int64_t* c_off) {
  if (device.is_cuda())
    cuda::gemm_strided<T>(g, alpha, a, b, beta, c, batch, a_off, b_off, c_off, device.index);
  else
    cpu::gemm_strided<T>(g, alpha, a, b, beta, c, batch, a_off, b_off, c_off);
}

// The grouped MoE GEMMs (core/ops/moe.cpp): on the CPU all items as one task list
// (cpu::gemm_grouped runs them side by side when they balance); on CUDA one strided-batched
// cuBLAS call per distinct size (one call in the padded layout, where every expert has the same
// row count).
template <class T>
void gemm_grouped(Device device, const RowMajorGemm& g, T alpha, const T* a, const T* b, T beta, T* c,
                  const GemmGroups& items) {
  if (!device.is_cuda()) {
    cpu::gemm_grouped<T>(g, alpha, a, b, beta, c, items);
    return;
  }
  std::map<std::int64_t, GemmGroups> by_size;  // size -> its items, in order
  for (std::size_t i = 0; i < items.size.size(); ++i)
    by_size[items.size[i]].add(items.size[i], items.a_off[i], items.b_off[i], items.c_off[i]);
  for (const auto& [size, batch] : by_size) {
    RowMajorGemm gi = g;
    (items.vary_k ? gi.k : gi.m) = size;
    cuda::gemm_strided<T>(gi, alpha, a, b, beta, c, static_cast<std::int64_t>(batch.size.size()), batch.a_off.data(),
                          batch.b_off.data(), batch.c_off.data(), device.index);
  }
}

}  // namespace moegrad::core
