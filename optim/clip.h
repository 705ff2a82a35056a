// Gradient clipping, in place on the parameters' .grad, like torch.nn.utils.clip_grad_norm_ and
// clip_grad_value_. Parameters without a gradient are ignored. A gradient that is not
// contiguous is first replaced by a contiguous copy.
#pragma once
#include <vector>

#include "optim/optimizer.h"

namespace moegrad::optim {

// The norm of all gradients together, as if concatenated: (sum_i ||g_i||_p^p)^(1/p), or
// max_i max|g_i| for norm_type = +inf. When it exceeds max_norm, every gradient is multiplied
// by coef = max_norm / (total + 1e-6) (coef clamped to at most 1, as PyTorch computes it).
// Returns the total norm before clipping (0 when no parameter has a gradient).
// A non-finite total throws "[clip_grad_norm] total norm is nan" when error_if_nonfinite;
// otherwise the gradients are scaled by the non-finite coefficient, like PyTorch.
// max_norm >= 0; norm_type > 0 (or +inf).
double clip_grad_norm(const NamedParameters& params, double max_norm, double norm_type = 2.0,
                      bool error_if_nonfinite = false);
double clip_grad_norm(const std::vector<ag::Variable>& params, double max_norm,
                      double norm_type = 2.0, bool error_if_nonfinite = false);

// The two halves of clip_grad_norm, for a norm combined elsewhere (over the ranks of a job,
// train/parallel.h): each parameter's gradient norm in params' order (0 for a parameter without
// a gradient; one host copy when the gradients share a device), and the scaling by
// max_norm / (total_norm + 1e-6) when that is below 1 (or NaN), as clip_grad_norm applies it.
std::vector<double> grad_norms(const NamedParameters& params, double norm_type = 2.0);
std::vector<double> grad_norms(const std::vector<ag::Variable>& params, double norm_type = 2.0);
void scale_grads_to_norm(const NamedParameters& params, double total_norm, double max_norm);
void scale_grads_to_norm(const std::vector<ag::Variable>& params, double total_norm, double max_norm);

// Clamps every gradient element to [-clip_value, clip_value] (clip_value >= 0; NaN stays NaN).
void clip_grad_value(const NamedParameters& params, double clip_value);
void clip_grad_value(const std::vector<ag::Variable>& params, double clip_value);

}  // namespace moegrad::optim
