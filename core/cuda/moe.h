// CUDA kernels for core/ops/moe.h, the twins of core/cpu/moe.h (same contracts, same results).
// The ops layer validates shapes, dtypes and devices and hands over contiguous operands on one
// CUDA device and a contiguous output. Row values are checked on the device: a bad row is
// recorded in the device's error slot (core/cuda/device_error.h) and raised by the host at the
// next synchronisation point ("[op] row index 9 out of range [-1, 8)"), never here; only
// check_rows, whose answer the host needs, synchronises. All work runs on cuda::stream(device).
// Row kernels: core/cuda/moe.cu; the grouped GEMMs are planned in core/ops/moe.cpp for both
// devices (cuBLAS through core/cuda/gemm.h, equal groups strided-batched). A CPU-only build
// has throwing stubs (core/cuda/stubs/moe_stubs.cpp).
#pragma once
#include <cstdint>
#include <vector>

#include "core/tensor.h"

namespace moegrad::core::cuda {

// Every value of row (contiguous i64) in [-1, num_rows), and with require_distinct no repeated
// non-negative value. Returns whether the non-negative values are pairwise distinct. Copies
// that answer to the host, so it synchronises and raises the device's deferred errors (this
// call's included).
bool check_rows(const char* op, const Tensor& row, std::int64_t num_rows, bool require_distinct);

// x [T, d], row [T, k], scale [T, k]; out [R, d] (written whole, need not be initialised):
// out[row[t,j]] = x[t] * scale[t,j], and 0 in the rows no (t, j) targets. Rows out of range or
// repeated are deferred errors.
void dispatch_rows(const Tensor& x, const Tensor& row, const Tensor& scale, const Tensor& out);
// y [R, d], row [T, k], weight [T, k]; out [T, d] (written whole): ascending j, from the first
// routed choice, each product and sum rounded, as the CPU kernel (the same bits where the host
// compiler does not fuse them into FMAs).
void combine_rows(const Tensor& y, const Tensor& row, const Tensor& weight, const Tensor& out);
// a [R, d], row [T, k], b [T, d]; out [T, k] (written whole; 0 where row < 0).
void row_dot(const Tensor& a, const Tensor& row, const Tensor& b, const Tensor& out);

// Slot assignment (core/kernels/moe_slots_math.h), one thread per group; outputs written whole. An
// expert id outside [0, E) is a deferred error ("[assign_slots] expert id 9 out of range [0, 8)").
void assign_slots(const Tensor& expert, const Tensor& active, std::int64_t groups, std::int64_t num_experts,
                  std::int64_t capacity, std::int64_t outer, const Tensor& position, const Tensor& padded_row,
                  const Tensor& routed, const Tensor& kept);

}  // namespace moegrad::core::cuda
