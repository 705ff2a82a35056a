// The MoE row kernels, declared once for every backend (core/cpu/moe.cpp, core/cuda/moe.cu;
// reached through backend<MoeKernels>, core/backend.h; the grouped GEMMs are planned in
// core/ops/moe.cpp and run by the gemm family). The ops layer validates shapes, dtypes and
// devices and hands over contiguous operands and a contiguous output. Row index -1 means "not
// routed". Row values are checked by the kernels: the CPU throws "[op] row index 9 out of range
// [-1, 8)"; CUDA records it in the device's error slot (core/cuda/device_error.h), raised at the
// next synchronisation. The same results on every device.
#pragma once
#include <cstdint>

#include "core/tensor.h"

namespace moegrad::core {

struct MoeKernels {
  // Every value of row (contiguous i64) in [-1, num_rows); with require_distinct a repeated
  // non-negative value is an error ("[op] row index 7 appears twice"). Returns whether the
  // non-negative values are pairwise distinct (on CUDA a copy to the host: it synchronises and
  // raises the device's deferred errors, this call's included).
  bool (*check_rows)(const char* op, const Tensor& row, std::int64_t num_rows, bool require_distinct);

  // x [T, d], row [T, k], scale [T, k]; out [R, d] (written whole, need not be initialised):
  // out[row[t,j]] = x[t] * scale[t,j], and 0 in the rows no (t, j) targets.
  void (*dispatch_rows)(const Tensor& x, const Tensor& row, const Tensor& scale, const Tensor& out);
  // y [R, d], row [T, k], weight [T, k]; out [T, d] (written whole): ascending j, from the first
  // routed choice, each product and sum rounded.
  void (*combine_rows)(const Tensor& y, const Tensor& row, const Tensor& weight, const Tensor& out);
  // a [R, d], row [T, k], b [T, d]; out [T, k] (written whole; 0 where row < 0).
  void (*row_dot)(const Tensor& a, const Tensor& row, const Tensor& b, const Tensor& out);

  // Slot assignment (core/kernels/moe_slots_math.h) of every group; expert [G * n, k], active
  // (u8, same shape) or undefined; outputs contiguous i64, written whole. An expert id outside
  // [0, E) is an error ("[assign_slots] expert id 9 out of range [0, 8)").
  void (*assign_slots)(const Tensor& expert, const Tensor& active, std::int64_t groups, std::int64_t num_experts,
                       std::int64_t capacity, std::int64_t outer, const Tensor& position, const Tensor& padded_row,
                       const Tensor& routed, const Tensor& kept);

  static const MoeKernels cpu;   // core/cpu/moe.cpp
  static const MoeKernels cuda;  // core/cuda/moe.cu (CUDA builds only)
};

}  // namespace moegrad::core
