// Causal attention: validate once, allocate, call the device's AttentionKernels
// (core/kernels/attention.h). q, k, v and grad_out go as they are when their rows are
// unit-stride (the model's permuted projections); others (a broadcast gradient, a transposed
// head) are copied contiguous first. out and lse are the forward's own, contiguous.
#include "core/ops/attention.h"

#include <climits>
#include <cmath>

#include "core/backend.h"
#include "core/kernels/attention.h"
#include "core/ops/creation.h"
#include "core/ops/dispatch.h"
#include "core/ops/elementwise.h"

namespace moegrad::core {
namespace {

constexpr const char* kOp = "causal_attention";

// q, k, v defined, one device, one floating dtype, all [B, H, T, D] with one shape; T and D
// within the BLAS integer range (the CPU kernel's GEMM sizes and leading dims).
void check_qkv(const Tensor& q, const Tensor& k, const Tensor& v, double scale) {
  check_defined(kOp, q, "q");
  check_defined(kOp, k, "k");
  check_defined(kOp, v, "v");
  MOEGRAD_CHECK(q.dim() == 4 && k.dim() == 4 && v.dim() == 4, kOp,
                "q, k, v must be [B, H, T, D], got q {}, k {}, v {}", describe(q), describe(k), describe(v));
  MOEGRAD_CHECK(k.shape() == q.shape() && v.shape() == q.shape(), kOp,
                "q, k, v must have one shape [B, H, T, D], got q {}, k {}, v {}", describe(q), describe(k),
                describe(v));
  common_device(kOp, {&q, &k, &v});
  const DType dt = common_dtype(kOp, {&q, &k, &v});
  MOEGRAD_CHECK(is_floating(dt), kOp, "needs f32 or f64, got q {}", describe(q));
  MOEGRAD_CHECK(q.size(2) <= INT_MAX && q.size(3) <= INT_MAX, kOp, "T and D of q {} exceed the BLAS integer range",
                describe(q));
  MOEGRAD_CHECK(std::isfinite(scale), kOp, "scale must be finite, got {}", scale);
}

void check_like(const Tensor& t, const Shape& shape, const Tensor& q, const char* what, const char* form) {
  check_defined(kOp, t, what);
  MOEGRAD_CHECK(t.shape() == shape && t.dtype() == q.dtype() && t.device() == q.device(), kOp,
                "{} must be {} {} on {} like q {}, got {} on {}", what, form, shape_str(shape),
                q.device().str(), describe(q), describe(t), t.device().str());
}

// t itself when the kernels can read it in place (rows_unit_stride), else a contiguous copy.
Tensor readable(const Tensor& t) { return rows_unit_stride(t) ? t : contiguous(t); }

}  // namespace

AttentionForward causal_attention_forward(const Tensor& q, const Tensor& k, const Tensor& v, double scale) {
  check_qkv(q, k, v, scale);
  const Device dev = q.device();
  AttentionForward r{empty_for(kOp, q.shape(), {q.dtype(), dev}),
                     empty_for(kOp, {q.size(0), q.size(1), q.size(2)}, {q.dtype(), dev})};
  if (q.numel() == 0) {
    // D = 0: every score is 0, so row t's softmax is uniform over its t + 1 keys.
    if (r.lse.numel() > 0)
      copy_(r.lse, log(arange(1.0, static_cast<double>(q.size(2)) + 1.0, 1.0, {q.dtype(), dev})));
    return r;
  }
  backend<AttentionKernels>(kOp, dev).forward(readable(q), readable(k), readable(v), scale, r.out, r.lse);
  return r;
}

AttentionGrads causal_attention_backward(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& out,
                                         const Tensor& lse, const Tensor& grad_out, double scale) {
  check_qkv(q, k, v, scale);
  check_like(out, q.shape(), q, "out", "[B, H, T, D]");
  check_like(grad_out, q.shape(), q, "grad_out", "[B, H, T, D]");
  check_like(lse, {q.size(0), q.size(1), q.size(2)}, q, "lse", "[B, H, T]");
  const Device dev = q.device();
  AttentionGrads g{empty_for(kOp, q.shape(), {q.dtype(), dev}), empty_for(kOp, q.shape(), {q.dtype(), dev}),
                   empty_for(kOp, q.shape(), {q.dtype(), dev})};
  if (q.numel() == 0) {
    fill_(g.dq, 0.0);
    fill_(g.dk, 0.0);
    fill_(g.dv, 0.0);
    return g;
  }
  backend<AttentionKernels>(kOp, dev).backward(readable(q), readable(k), readable(v), contiguous(out),
                                               contiguous(lse), readable(grad_out), scale, g.dq, g.dk, g.dv);
  return g;
}

}  // namespace moegrad::core
