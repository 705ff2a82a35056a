// CPU kernels for core/ops/moe.h (the grouped GEMMs are planned in core/ops/moe.cpp). The ops
// layer validates shapes, dtypes and devices and hands over contiguous operands and a
// contiguous output; the kernels check row values (which needs the data) and throw
// "[op] row index ...". Row index -1 means "not routed".
#pragma once
#include <cstdint>
#include <vector>

#include "core/tensor.h"

namespace moegrad::core::cpu {

// Every value of row (contiguous i64) in [-1, num_rows), else "[op] row index 9 out of range
// [-1, 8)". With require_distinct a repeated non-negative value throws "[op] row index 7
// appears twice". Returns whether the non-negative values are pairwise distinct.
bool check_rows(const char* op, const Tensor& row, std::int64_t num_rows, bool require_distinct);

// x [T, d], row [T, k], scale [T, k]; out [R, d] (written whole, need not be initialised):
// out[row[t,j]] = x[t] * scale[t,j], and 0 in the rows no (t, j) targets.
void dispatch_rows(const Tensor& x, const Tensor& row, const Tensor& scale, const Tensor& out);
// y [R, d], row [T, k], weight [T, k]; out [T, d] (written whole).
void combine_rows(const Tensor& y, const Tensor& row, const Tensor& weight, const Tensor& out);
// a [R, d], row [T, k], b [T, d]; out [T, k] (written whole).
void row_dot(const Tensor& a, const Tensor& row, const Tensor& b, const Tensor& out);

// Slot assignment (core/kernels/moe_slots_math.h) of every group; expert [G * n, k], active (u8, same
// shape) or undefined; outputs contiguous i64, written whole. Throws "[assign_slots] expert id 9
// out of range [0, 8)".
void assign_slots(const Tensor& expert, const Tensor& active, std::int64_t groups, std::int64_t num_experts,
                  std::int64_t capacity, std::int64_t outer, const Tensor& position, const Tensor& padded_row,
                  const Tensor& routed, const Tensor& kept);

}  // namespace moegrad::core::cpu
