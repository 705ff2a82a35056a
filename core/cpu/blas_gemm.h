// GEMM on row-major strided matrices through CBLAS (OpenBLAS): the CPU side of the gemm family
// (core/kernels/gemm.h, which also holds RowMajorGemm, to_col_major and GemmGroups).
#pragma once
#include <omp.h>

#include <cstdint>
#include <vector>

#include "core/kernels/gemm.h"

namespace moegrad::core::cpu {

// Batched strided GEMM (T = Out = float or double, or T = Bf16 with Out = float: bf16 operands,
// f32 accumulation and C, through gemm_engine().gemm_bf16): for i in [0, batch): C + c_off[i] = alpha * op(A + a_off[i]) @
// op(B + b_off[i]) + beta * (C + c_off[i]). Offsets are in elements; any offsets (including
// repeated ones for broadcast operands) are fine for A and B; C's batches must not overlap.
// k == 0 scales C by beta (beta == 0 writes zeros); m == 0 or n == 0 does nothing.
// Throws moegrad::Error "[matmul] ..." if a size does not fit BLAS's integer type.
template <class T, class Out = T>
void gemm_strided(const RowMajorGemm& g, Out alpha, const T* a, const T* b, Out beta, Out* c,
                  std::int64_t batch, const std::int64_t* a_off, const std::int64_t* b_off,
                  const std::int64_t* c_off);

// Runs every item of `items`. When there are several OpenMP threads, OpenBLAS runs single-
// threaded inside a parallel region (its OpenMP or sequential build) and the items balance
// over the threads (the largest holds at most one thread's share of the FLOPs), the items run
// side by side, largest first, one per thread: small per-expert GEMMs then skip the threaded
// BLAS's per-call splitting and synchronisation (64 experts of [40, 1024] @ [1024, 1024] on 2
// cores: 114 -> 174 GFLOP/s). Otherwise one after another, each on all threads.
template <class T, class Out = T>
void gemm_grouped(const RowMajorGemm& g, Out alpha, const T* a, const T* b, Out beta, Out* c,
                  const GemmGroups& items);

// The order in which gemm_grouped runs the items side by side (largest first), or empty when
// it runs them one after another: fewer items than threads, one thread, already inside a
// parallel region, a pthread OpenBLAS, an item above one thread's share of the total size, or
// too little work in all (macs_per_size: multiply-adds per unit of an item's size).
std::vector<std::int64_t> side_by_side_order(const GemmGroups& items, int threads, std::int64_t macs_per_size);

// Calls body(i) for every item i as gemm_grouped schedules them: side by side in
// side_by_side_order's order when it gives one (body then runs on OpenMP threads and must not
// throw), else one after another in item order.
template <class Body>
void for_each_gemm_item(const GemmGroups& items, std::int64_t macs_per_size, Body body) {
  const auto count = static_cast<std::int64_t>(items.size.size());
  const std::vector<std::int64_t> order = side_by_side_order(items, omp_get_max_threads(), macs_per_size);
  if (order.empty()) {
    for (std::int64_t i = 0; i < count; ++i) body(i);
    return;
  }
#pragma omp parallel for schedule(dynamic, 1)
  for (std::int64_t j = 0; j < count; ++j) body(order[static_cast<std::size_t>(j)]);
}

extern template void gemm_grouped<float>(const RowMajorGemm&, float, const float*, const float*,
                                         float, float*, const GemmGroups&);
extern template void gemm_grouped<double>(const RowMajorGemm&, double, const double*,
                                          const double*, double, double*, const GemmGroups&);

extern template void gemm_grouped<Bf16, float>(const RowMajorGemm&, float, const Bf16*, const Bf16*, float, float*,
                                               const GemmGroups&);
extern template void gemm_strided<Bf16, float>(const RowMajorGemm&, float, const Bf16*, const Bf16*, float, float*,
                                               std::int64_t, const std::int64_t*, const std::int64_t*,
                                               const std::int64_t*);
extern template void gemm_strided<float>(const RowMajorGemm&, float, const float*, const float*,
                                         float, float*, std::int64_t, const std::int64_t*,
                                         const std::int64_t*, const std::int64_t*);
extern template void gemm_strided<double>(const RowMajorGemm&, double, const double*,
                                          const double*, double, double*, std::int64_t,
                                          const std::int64_t*, const std::int64_t*,
                                          const std::int64_t*);

}  // namespace moegrad::core::cpu
