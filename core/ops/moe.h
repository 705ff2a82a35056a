// Mixture-of-experts fast path: index-based dispatch/combine of token rows and a grouped GEMM
// over contiguous row groups (one group per expert). Index tensors are i64; a row index of -1
// means "not routed". Float operands share dtype (f32 or f64) and device; strided inputs are
// accepted (copied contiguous). Offsets are a small i64 tensor on the CPU.
#pragma once
#include <cstdint>
#include <vector>

#include "core/tensor.h"

namespace moegrad::core {

// The routing's slots, computed on expert's device (no copy to the host). expert i64 [G * n, k]:
// choice j of token t of group g at row g * n + t, local expert ids in [0, E); active u8 of the
// same shape (0 = not routed) or undefined (all routed); groups G, split into `outer` blocks of
// G / outer groups, each block with its own E experts (flat expert x = block * E + e).
// Order: choice-major, then sequence order; the j-th choices of an expert start after the kept
// choices 0..j-1 of it; a choice is kept iff its slot < capacity (st-moe; lucidrains for k = 2).
struct SlotAssignment {
  Tensor position;    // i64 [G * n, k]: slot in its (group, expert), >= capacity if dropped, -1 not routed
  Tensor padded_row;  // i64 [G * n, k]: row (x * G / outer + g % (G / outer)) * capacity + slot if kept, else -1
  Tensor routed;      // i64 [G, E]: routed choices per (group, expert), before capacity
  Tensor kept;        // i64 [G, E]: choices that got a slot
};
SlotAssignment assign_slots(const Tensor& expert, const Tensor& active, std::int64_t groups,
                            std::int64_t num_experts, std::int64_t capacity, std::int64_t outer = 1);

// x [T, d], row i64 [T, k] in [-1, R), scale [T, k] -> out [R, d]: zeros, then
// out[row[t,j]] = x[t] * scale[t,j] for every row[t,j] >= 0. The non-negative rows must be
// distinct ("[dispatch_rows] row index 7 appears twice").
Tensor dispatch_rows(const Tensor& x, const Tensor& row, const Tensor& scale,
                     std::int64_t num_rows);

// y [R, d], row i64 [T, k] in [-1, R), weight [T, k] -> out [T, d]:
// out[t] = sum over j ascending with row[t,j] >= 0 of weight[t,j] * y[row[t,j]], from 0.
// Rows may repeat.
Tensor combine_rows(const Tensor& y, const Tensor& row, const Tensor& weight);

// a [R, d], row i64 [T, k] in [-1, R), b [T, d] -> [T, k]: <a[row[t,j]], b[t]>, 0 where row < 0.
Tensor row_dot(const Tensor& a, const Tensor& row, const Tensor& b);

// Whether the non-negative values of row (i64, values in [-1, num_rows)) are pairwise distinct.
bool rows_distinct(const Tensor& row, std::int64_t num_rows);

// x [R, a], w [E, a, b] (or [E, b, a] with transpose_w: PyTorch Linear weights [out, in]),
// offsets i64 [E + 1] (0 = off[0] <= off[1] <= ... <= off[E] = R) -> [R, b]:
// out[off[e]:off[e+1]] = x[off[e]:off[e+1]] @ (transpose_w ? w[e]^T : w[e]).
// With bias [E, b], each row of group e starts from bias[e] and the GEMM adds to it (beta = 1):
// no per-row bias tensor and no separate add pass.
// x and w f32 or f64 (equal), or both bf16; bf16 operands, and f32 ones while
// core::gemm_precision() is bf16 (core/precision.h), give an f32 product (bias f32).
Tensor grouped_matmul(const Tensor& x, const Tensor& w, const Tensor& offsets, bool transpose_w,
                      const Tensor& bias = {});

// Per group, the sum of y's rows: y [R, b] -> [E, b] (the bias gradient of grouped_matmul;
// empty groups give 0).
Tensor grouped_row_sums(const Tensor& y, const Tensor& offsets);

// m when group offsets off [E + 1] are 0, m, 2m, ..., E m (equal groups: the padded layout, or
// every expert at capacity), else -1 (also for E = 0). Equal groups are one [E, m, ...] view.
std::int64_t equal_group_rows(const std::vector<std::int64_t>& off);

// The weight gradient of grouped_matmul, in w's layout (E = offsets.numel() - 1):
// [E, a, b] = x_e^T @ gy_e, or [E, b, a] = gy_e^T @ x_e with transpose_w. Empty groups give 0.
// Precision as grouped_matmul's (bf16 operands give f32).
Tensor grouped_matmul_weight_grad(const Tensor& x, const Tensor& gy, const Tensor& offsets,
                                  bool transpose_w);

}  // namespace moegrad::core
