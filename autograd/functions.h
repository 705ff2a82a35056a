// Differentiable ops on Variables. Each is defined, forward and backward side by side, in
// autograd/functions/<family>.cpp and registered in the gradient-check catalogue.
#pragma once
#include <vector>

#include "autograd/variable.h"

namespace moegrad::ag {

using Dims = std::vector<std::int64_t>;

// ---- arithmetic (broadcasting) -------------------------------------------------------------
Variable add(const Variable& a, const Variable& b);
Variable sub(const Variable& a, const Variable& b);
Variable mul(const Variable& a, const Variable& b);
Variable div(const Variable& a, const Variable& b);
Variable pow(const Variable& a, const Variable& b);
Variable maximum(const Variable& a, const Variable& b);
Variable minimum(const Variable& a, const Variable& b);
Variable add(const Variable& a, double b);
Variable sub(const Variable& a, double b);
Variable rsub(const Variable& a, double b);  // b - a
Variable mul(const Variable& a, double b);
Variable div(const Variable& a, double b);
Variable pow(const Variable& a, double exponent);
Variable where(const Tensor& cond, const Variable& a, const Variable& b);
Variable clamp(const Variable& x, double lo, double hi);

Variable operator+(const Variable& a, const Variable& b);
Variable operator-(const Variable& a, const Variable& b);
Variable operator*(const Variable& a, const Variable& b);
Variable operator/(const Variable& a, const Variable& b);
Variable operator-(const Variable& a);
Variable operator+(const Variable& a, double b);
Variable operator-(const Variable& a, double b);
Variable operator*(const Variable& a, double b);
Variable operator/(const Variable& a, double b);
Variable operator+(double a, const Variable& b);
Variable operator-(double a, const Variable& b);
Variable operator*(double a, const Variable& b);

// ---- unary --------------------------------------------------------------------------------
Variable neg(const Variable& x);
Variable exp(const Variable& x);
Variable log(const Variable& x);
Variable sqrt(const Variable& x);
Variable rsqrt(const Variable& x);
Variable abs(const Variable& x);
Variable square(const Variable& x);
Variable tanh(const Variable& x);
Variable sigmoid(const Variable& x);
Variable relu(const Variable& x);
Variable leaky_relu(const Variable& x, double negative_slope = 0.01);
Variable gelu(const Variable& x);
Variable gelu_tanh(const Variable& x);
// h [..., 2H] = (value, gate) -> (gelu(gate) * value) * mult [..., H] in one pass (st-moe's GEGLU
// with mult_bias; mult broadcasts); the backward recomputes gelu and writes d h as one buffer.
Variable geglu(const Variable& h, const Variable& mult);
Variable silu(const Variable& x);

// ---- reductions ---------------------------------------------------------------------------
Variable sum(const Variable& x, const Dims& dims = {}, bool keepdim = false);
Variable mean(const Variable& x, const Dims& dims = {}, bool keepdim = false);
Variable amax(const Variable& x, const Dims& dims = {}, bool keepdim = false);  // ties share
Variable amin(const Variable& x, const Dims& dims = {}, bool keepdim = false);
struct VariableIndices {
  Variable values;  // differentiable
  Tensor indices;   // i64, no gradient
};
VariableIndices max(const Variable& x, std::int64_t dim, bool keepdim = false);
VariableIndices min(const Variable& x, std::int64_t dim, bool keepdim = false);
Variable logsumexp(const Variable& x, const Dims& dims, bool keepdim = false);
Variable norm(const Variable& x, double p = 2.0, const Dims& dims = {}, bool keepdim = false);
Variable softmax(const Variable& x, std::int64_t dim);
Variable log_softmax(const Variable& x, std::int64_t dim);
Variable cumsum(const Variable& x, std::int64_t dim, bool exclusive = false, bool reverse = false);
// st-moe's RMSNorm fused (autograd/functions/normalization.cpp): x [..., D] ->
// (x / max(||x||_2 over D, eps)) * gamma * scale, gamma broadcast to x (usually [D]).
Variable rms_norm(const Variable& x, const Variable& gamma, double scale, double eps);

// ---- linear algebra -----------------------------------------------------------------------
Variable matmul(const Variable& a, const Variable& b);

// ---- attention (autograd/functions/attention.cpp) -------------------------------------------
// Causal scaled-dot-product attention: q, k, v [B, H, T, D] (one dtype and device) ->
// out [B, H, T, D], out[.., t, :] = sum_{s <= t} softmax_s(scale * q[t] . k[s]) v[s].
// Saves q, k, v, out and the rows' log-sum-exp [B, H, T]; backward recomputes the
// probabilities block by block, so no [B, H, T, T] tensor is kept for backward.
Variable causal_attention(const Variable& q, const Variable& k, const Variable& v, double scale);
// The rotary position embedding in one pass (core/ops/rotary.h): x [..., D], D even, rotated
// pair by pair by angles whose cos and sin (constants) broadcast to [..., D / 2]; differentiable in x.
Variable rotary(const Variable& x, const Tensor& cos, const Tensor& sin);

// ---- views and shape ----------------------------------------------------------------------
Variable reshape(const Variable& x, const Shape& shape);
Variable view(const Variable& x, const Shape& shape);
Variable flatten(const Variable& x, std::int64_t start_dim = 0, std::int64_t end_dim = -1);
Variable permute(const Variable& x, const Dims& dims);
Variable transpose(const Variable& x, std::int64_t dim0, std::int64_t dim1);
Variable narrow(const Variable& x, std::int64_t dim, std::int64_t start, std::int64_t length);
Variable slice(const Variable& x, std::int64_t dim, std::int64_t start, std::int64_t end, std::int64_t step = 1);
Variable select(const Variable& x, std::int64_t dim, std::int64_t index);
Variable expand(const Variable& x, const Shape& shape);
Variable squeeze(const Variable& x, std::int64_t dim);
Variable unsqueeze(const Variable& x, std::int64_t dim);
Variable contiguous(const Variable& x);
Variable to_dtype(const Variable& x, DType dtype);  // between f32 and f64

// ---- indexing and joining -----------------------------------------------------------------
VariableIndices topk(const Variable& x, std::int64_t k, std::int64_t dim = -1, bool largest = true);
Variable gather(const Variable& x, std::int64_t dim, const Tensor& index);
Variable scatter(const Variable& x, std::int64_t dim, const Tensor& index, const Variable& src);
Variable scatter_add(const Variable& x, std::int64_t dim, const Tensor& index, const Variable& src);
Variable index_select(const Variable& x, std::int64_t dim, const Tensor& index);
Variable index_add(const Variable& x, std::int64_t dim, const Tensor& index, const Variable& src);
Variable cat(const std::vector<Variable>& xs, std::int64_t dim);
Variable stack(const std::vector<Variable>& xs, std::int64_t dim);
std::vector<Variable> chunk(const Variable& x, std::int64_t chunks, std::int64_t dim);
std::vector<Variable> split(const Variable& x, std::int64_t split_size, std::int64_t dim);
std::vector<Variable> split(const Variable& x, const std::vector<std::int64_t>& sizes, std::int64_t dim);
Variable pad(const Variable& x, const std::vector<std::int64_t>& pads, double value = 0.0);

// ---- non-differentiable results (no gradient flows through them) -----------------------
Tensor argmax(const Variable& x, std::int64_t dim, bool keepdim = false);
Tensor argmin(const Variable& x, std::int64_t dim, bool keepdim = false);
Tensor one_hot(const Tensor& indices, std::int64_t num_classes, DType dtype = DType::i64);

// ---- mixture of experts (index-based dispatch) --------------------------------------------
// row / offsets are i64 constants (no gradient); row -1 means "not routed". See core/ops/moe.h.
// x [T, d], scale [T, k] -> [num_rows, d]: out[row[t,j]] = x[t] * scale[t,j] (rows distinct).
Variable dispatch_rows(const Variable& x, const Tensor& row, const Variable& scale, std::int64_t num_rows);
// y [R, d], weight [T, k] -> [T, d]: out[t] = sum_j weight[t,j] * y[row[t,j]] (rows may repeat).
// distinct_rows: the caller knows row's non-negative values are distinct (the MoE row maps), so
// the backward is a dispatch_rows (which still checks it) instead of first asking the rows
// (on a GPU that answer is a copy to the host) and falling back to an index_add.
Variable combine_rows(const Variable& y, const Tensor& row, const Variable& weight, bool distinct_rows = false);
// x [R, a], w [E, a, b] (or [E, b, a] with transpose_w), offsets [E + 1] -> [R, b], per group
// out_e = x_e @ w_e (or x_e @ w_e^T), plus bias[e] [E, b] when a bias is given (added by the GEMM
// itself, beta = 1; its gradient is the per-group row sum of the output gradient).
Variable grouped_matmul(const Variable& x, const Variable& w, const Tensor& offsets, bool transpose_w,
                        const Variable& bias = Variable());

}  // namespace moegrad::ag
