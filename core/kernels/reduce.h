// The reduction kernels, declared once for every backend (core/cpu/reduce.cpp,
// core/cuda/reduce.cu; reached through backend<ReduceKernels>, core/backend.h).
// Arguments are validated by the ops layer (core/ops/reduce.cpp); the kernels assume supported
// dtypes and preallocated outputs on the input's device. The same results on every device up to
// the order of float sums (accumulated in double); deterministic (fixed reduction trees, no float
// atomics). CUDA kernels run on the device's stream and never synchronise.
//
// Reductions over dims take the ops layer's plan (core/kernels/reduce_plan.h: x as dense
// [A, R, B], reducing R); out is contiguous and holds A * B values (the kept dims in x's order).
//
// One-dim ops (max/min, softmax family, cumsum): x (and gy, y) are contiguous; out has x's
// shape (or the reduced shape for max/min) and is contiguous.
#pragma once
#include <cstdint>

#include "core/kernels/reduce_plan.h"
#include "core/tensor.h"

namespace moegrad::core {

struct ReduceKernels {
  // x: f32, f64 or i64; out in x's dtype.
  void (*sum)(const ReducePlan& x, const Tensor& out);
  // x: f32 or f64; empty reductions give NaN.
  void (*mean)(const ReducePlan& x, const Tensor& out);
  // x: f32, f64 or i64; NaN propagates; the reduced extent must be non-empty.
  void (*amax)(const ReducePlan& x, const Tensor& out);
  void (*amin)(const ReducePlan& x, const Tensor& out);
  // x: f32 or f64; empty reductions give -inf.
  void (*logsumexp)(const ReducePlan& x, const Tensor& out);
  // x: f32 or f64; p > 0 (p = inf: max |x|).
  void (*norm)(const ReducePlan& x, double p, const Tensor& out);

  // x contiguous, size(dim) > 0. values (x's dtype) may be undefined; indices are i64.
  void (*max)(const Tensor& x, std::int64_t dim, const Tensor& values, const Tensor& indices);
  void (*min)(const Tensor& x, std::int64_t dim, const Tensor& values, const Tensor& indices);
  void (*argmax)(const Tensor& x, std::int64_t dim, const Tensor& indices);
  void (*argmin)(const Tensor& x, std::int64_t dim, const Tensor& indices);

  // Floating, contiguous, out has x's shape.
  void (*softmax)(const Tensor& x, std::int64_t dim, const Tensor& out);
  void (*log_softmax)(const Tensor& x, std::int64_t dim, const Tensor& out);
  // gy, y contiguous with one shape and dtype.
  void (*softmax_backward)(const Tensor& gy, const Tensor& y, std::int64_t dim, const Tensor& out);
  void (*log_softmax_backward)(const Tensor& gy, const Tensor& y, std::int64_t dim, const Tensor& out);

  // x contiguous (f32, f64 or i64), out has x's shape and dtype.
  void (*cumsum)(const Tensor& x, std::int64_t dim, bool exclusive, bool reverse, const Tensor& out);

  // x contiguous f32 or f64: "[op] <what> contains NaN or Inf" when an element is not finite
  // (op and what: string literals). The CPU throws at once; CUDA records it in the device's
  // error slot, raised at the next synchronisation (no wait here).
  void (*report_non_finite)(const Tensor& x, const char* op, const char* what);

  static const ReduceKernels cpu;   // core/cpu/reduce.cpp
  static const ReduceKernels cuda;  // core/cuda/reduce.cu (CUDA builds only)
};

}  // namespace moegrad::core
