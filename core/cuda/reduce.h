// CUDA kernels for core/ops/reduce.h: the contracts of core/cpu/reduce.h, the same results up to
// the order of float sums (still accumulated in double), deterministic (fixed reduction trees,
// no float atomics). Kernels run on the device's stream (cuda::stream) and never synchronise.
// Arguments are validated by the ops layer; the kernels assume valid dims (normalised to
// [0, ndim), sorted, unique; an empty list means "no dims", the ops layer expands "all dims"
// itself), supported dtypes and preallocated outputs on the input's device.
//
// Reductions over `dims`: x may be strided (transposed, sliced, expanded); out is contiguous
// and holds the kept dims in x's order (its shape may be the keepdim or the squeezed form:
// only the element order matters). Float sums accumulate in double.
//
// One-dim ops (max/min, softmax family, cumsum): x (and gy, y) are contiguous; out has x's
// shape (or the reduced shape for max/min) and is contiguous.
#pragma once
#include <cstdint>
#include <vector>

#include "core/kernels/reduce_plan.h"
#include "core/tensor.h"

namespace moegrad::core::cuda {

// x: contiguous f32 or f64. Records "[op] <what> contains NaN or Inf" in the device's error slot
// when an element is not finite (raised at the next synchronisation; op and what must be string
// literals).
void report_non_finite(const Tensor& x, const char* op, const char* what);

// x: f32, f64 or i64; out in x's dtype.
void sum(const ReducePlan& x, const Tensor& out);
// x: f32 or f64; empty reductions give NaN.
void mean(const ReducePlan& x, const Tensor& out);
// x: f32, f64 or i64; NaN propagates; the reduced extent must be non-empty.
void amax(const ReducePlan& x, const Tensor& out);
void amin(const ReducePlan& x, const Tensor& out);
// x: f32 or f64; empty reductions give -inf.
void logsumexp(const ReducePlan& x, const Tensor& out);
// x: f32 or f64; p > 0 (p = inf: max |x|).
void norm(const ReducePlan& x, double p, const Tensor& out);

// x contiguous, size(dim) > 0. values (x's dtype) may be undefined; indices are i64.
void max(const Tensor& x, std::int64_t dim, const Tensor& values, const Tensor& indices);
void min(const Tensor& x, std::int64_t dim, const Tensor& values, const Tensor& indices);
void argmax(const Tensor& x, std::int64_t dim, const Tensor& indices);
void argmin(const Tensor& x, std::int64_t dim, const Tensor& indices);

// Floating, contiguous, out has x's shape.
void softmax(const Tensor& x, std::int64_t dim, const Tensor& out);
void log_softmax(const Tensor& x, std::int64_t dim, const Tensor& out);
// gy, y contiguous with one shape and dtype.
void softmax_backward(const Tensor& gy, const Tensor& y, std::int64_t dim, const Tensor& out);
void log_softmax_backward(const Tensor& gy, const Tensor& y, std::int64_t dim, const Tensor& out);

// x contiguous (f32, f64 or i64), out has x's shape and dtype.
void cumsum(const Tensor& x, std::int64_t dim, bool exclusive, bool reverse, const Tensor& out);

}  // namespace moegrad::core::cuda
