// CPU kernels for core/ops/moe.h. The ops layer validates shapes, dtypes and devices and hands
// over contiguous operands and a contiguous output; the kernels check row values (which needs
// the data) and throw "[op] row index ...". Row index -1 means "not routed".
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

// x [R, a], w [E, a, b] or [E, b, a] (transpose_w), offsets validated (E + 1 values from 0 to
// R, non-decreasing); out [R, b]. One GEMM per non-empty group; BLAS applies the transpose.
void grouped_matmul(const Tensor& x, const Tensor& w, const std::vector<std::int64_t>& offsets,
                    bool transpose_w, const Tensor& out);
// x [R, a], gy [R, b]; out [E, a, b] (or [E, b, a] with transpose_w), written whole.
void grouped_matmul_weight_grad(const Tensor& x, const Tensor& gy,
                                const std::vector<std::int64_t>& offsets, bool transpose_w,
                                const Tensor& out);

}  // namespace moegrad::core::cpu
