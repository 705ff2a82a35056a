// Mixture-of-experts fast path: index-based dispatch / combine of token rows and the grouped
// GEMM. row and offsets are i64 constants. dispatch_rows and combine_rows are bilinear and
// each other's adjoint; row_dot gives the gradient of the per-(t, j) factor.
#include "autograd/functions.h"
#include "autograd/functions/gemm_inputs.h"
#include "autograd/node.h"
#include "autograd/registry.h"

namespace moegrad::ag {

MOEGRAD_DIFFERENTIABLE("dispatch_rows", "combine_rows", "grouped_matmul");

namespace {

// dy [R, d] of combine_rows when rows repeat: dy[r] = sum over (t, j) with row[t,j] = r of
// weight[t,j] * g[t], accumulated by index_add over the T * k pairs; unrouted pairs (-1) go to
// a spare row R that is dropped.
Tensor scatter_add_rows(const Tensor& g, const Tensor& row, const Tensor& weight, std::int64_t R) {
  const std::int64_t n = row.numel(), d = g.size(1);
  Tensor src = core::reshape(core::mul(core::unsqueeze(g, 1), core::unsqueeze(weight, 2)), {n, d});
  Tensor spare = core::full(row.shape(), static_cast<double>(R), {DType::i64, row.device()});
  Tensor idx = core::reshape(core::where(core::lt(row, 0.0), spare, row), {n});
  Tensor acc = core::index_add(core::zeros({R + 1, d}, {g.dtype(), g.device()}), 0, idx, src);
  return core::narrow(acc, 0, 0, R);
}

}  // namespace

Variable dispatch_rows(const Variable& x, const Tensor& row, const Variable& scale, std::int64_t num_rows) {
  return record("dispatch_rows", core::dispatch_rows(x.value(), row, scale.value(), num_rows), {x, scale},
                [X = x.value(), row, S = scale.value()](const Tensor& g, const Needs& need) {
                  return Grads{need[0] ? core::combine_rows(g, row, S) : Tensor{},  // dx[t] = sum_j s[t,j] g[row[t,j]]
                               need[1] ? core::row_dot(g, row, X) : Tensor{}};   // ds[t,j] = <g[row[t,j]], x[t]>
                });
}

Variable combine_rows(const Variable& y, const Tensor& row, const Variable& weight, bool distinct_rows) {
  return record("combine_rows", core::combine_rows(y.value(), row, weight.value()), {y, weight},
                [Y = y.value(), row, W = weight.value(), distinct_rows](const Tensor& g, const Needs& need) {
                  Tensor gy;
                  if (need[0]) {
                    const std::int64_t R = Y.size(0);
                    // Distinct rows: dispatch_rows is the exact adjoint; repeated rows must accumulate.
                    gy = distinct_rows || core::rows_distinct(row, R) ? core::dispatch_rows(g, row, W, R)
                                                                      : scatter_add_rows(g, row, W, R);
                  }
                  return Grads{gy, need[1] ? core::row_dot(Y, row, g) : Tensor{}};  // dw[t,j] = <y[row[t,j]], g[t]>
                });
}

Variable grouped_matmul(const Variable& x, const Variable& w, const Tensor& offsets, bool transpose_w,
                        const Variable& bias) {
  const bool has_bias = bias.defined();
  std::vector<Variable> inputs{x, w};
  if (has_bias) inputs.push_back(bias);
  const core::Precision p = core::gemm_precision();  // recorded: backward runs its GEMMs the same way
  const Tensor X = gemm_input(x.value(), p), W = gemm_input(w.value(), p);
  return record("grouped_matmul",
                core::grouped_matmul(X, W, offsets, transpose_w, has_bias ? bias.value() : Tensor{}),
                inputs, [X, W, offsets, transpose_w, has_bias, p](const Tensor& gy, const Needs& need) {
                  const core::GemmPrecisionScope scope(p);
                  const Tensor g = gemm_input(gy, p);
                  // y_e = x_e @ op(w_e) + b_e  =>  dx_e = g_e @ op(w_e)^T (the same w with the flag flipped),
                  // db_e = the sum of g_e's rows (f32, from the incoming gradient).
                  Grads grads{need[0] ? core::grouped_matmul(g, W, offsets, !transpose_w) : Tensor{},
                              need[1] ? core::grouped_matmul_weight_grad(X, g, offsets, transpose_w) : Tensor{}};
                  if (has_bias) grads.push_back(need[2] ? core::grouped_row_sums(gy, offsets) : Tensor{});
                  return grads;
                });
}

}  // namespace moegrad::ag
