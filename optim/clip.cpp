// Gradient clipping by global norm and by value, in place.
#include "optim/clip.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "core/ops.h"
#include "core/ops/fused_update.h"

namespace moegrad::optim {

namespace {

// The defined gradients, each made contiguous in place (a non-contiguous one is replaced by
// a contiguous copy), on whatever device they live.
std::vector<core::Tensor> grads_of(const char* op, const std::vector<ag::Variable>& params) {
  std::vector<core::Tensor> out;
  for (const ag::Variable& v : params) {
    if (!v.defined() || !v.grad().defined()) continue;
    if (!v.grad().is_contiguous()) v.set_grad(core::clone(v.grad()));
    const core::Tensor& g = v.grad();
    MOEGRAD_CHECK(core::is_floating(g.dtype()), op, "gradient {} is not floating", core::describe(g));
    out.push_back(g);
  }
  return out;
}

std::vector<ag::Variable> variables(const NamedParameters& params) {
  std::vector<ag::Variable> out;
  out.reserve(params.size());
  for (const auto& [n, v] : params) out.push_back(v);
  return out;
}

}  // namespace

std::vector<double> grad_norms(const std::vector<ag::Variable>& params, double norm_type) {
  const char* op = "grad_norms";
  MOEGRAD_CHECK(norm_type > 0, op, "invalid norm_type {}: must be > 0 or inf", norm_type);
  // Per-tensor norms in the gradient's dtype (as torch.norm gives them), read back in double.
  // The norms are computed on the gradients' device and read back in one copy when they share
  // a device (one synchronisation per call, not one per parameter).
  std::vector<core::Tensor> norms;
  bool one_device = true;
  std::vector<std::size_t> at;  // which parameter each norm belongs to
  for (std::size_t i = 0; i < params.size(); ++i) {
    const std::vector<core::Tensor> g = grads_of(op, {params[i]});
    if (g.empty()) continue;
    norms.push_back(core::to_dtype(core::norm(g.front(), norm_type), core::DType::f64));  // exact for f32
    one_device = one_device && g.front().device() == norms.front().device();
    at.push_back(i);
  }
  std::vector<double> values;
  if (norms.empty()) {
  } else if (one_device) {
    values = core::stack(norms, 0).to_vector<double>();
  } else {
    for (const core::Tensor& n : norms) values.push_back(n.item<double>());
  }
  std::vector<double> out(params.size(), 0.0);
  for (std::size_t j = 0; j < at.size(); ++j) out[at[j]] = values[j];
  return out;
}

void scale_grads_to_norm(const std::vector<ag::Variable>& params, double total_norm, double max_norm) {
  const double coef = max_norm / (total_norm + 1e-6);
  if (coef >= 1.0) return;  // clamped to 1: nothing to scale (a NaN coef does scale, like torch)
  for (const core::Tensor& g : grads_of("clip_grad_norm", params)) core::grad_scale_(g, coef);  // on the gradient's device
}

double clip_grad_norm(const std::vector<ag::Variable>& params, double max_norm, double norm_type,
                      bool error_if_nonfinite) {
  const char* op = "clip_grad_norm";
  MOEGRAD_CHECK(max_norm >= 0, op, "invalid max_norm {}: must be >= 0", max_norm);
  MOEGRAD_CHECK(norm_type > 0, op, "invalid norm_type {}: must be > 0 or inf", norm_type);
  if (grads_of(op, params).empty()) return 0.0;
  // The per-tensor norms combined in double on the host.
  const bool inf = std::isinf(norm_type);
  double total = 0;
  for (const double n : grad_norms(params, norm_type)) {
    if (inf) {
      total = (n > total || std::isnan(n)) ? n : total;
    } else {
      total += norm_type == 2.0 ? n * n : (norm_type == 1.0 ? n : std::pow(n, norm_type));
    }
  }
  if (!inf) total = norm_type == 2.0 ? std::sqrt(total) : (norm_type == 1.0 ? total : std::pow(total, 1.0 / norm_type));
  MOEGRAD_CHECK(!error_if_nonfinite || std::isfinite(total), op,
                "total norm is {}: the gradients cannot be clipped (error_if_nonfinite is set)", total);
  scale_grads_to_norm(params, total, max_norm);
  return total;
}

double clip_grad_norm(const NamedParameters& params, double max_norm, double norm_type, bool error_if_nonfinite) {
  return clip_grad_norm(variables(params), max_norm, norm_type, error_if_nonfinite);
}

std::vector<double> grad_norms(const NamedParameters& params, double norm_type) {
  return grad_norms(variables(params), norm_type);
}

void scale_grads_to_norm(const NamedParameters& params, double total_norm, double max_norm) {
  scale_grads_to_norm(variables(params), total_norm, max_norm);
}

void clip_grad_value(const std::vector<ag::Variable>& params, double clip_value) {
  const char* op = "clip_grad_value";
  MOEGRAD_CHECK(clip_value >= 0, op, "invalid clip_value {}: must be >= 0", clip_value);
  for (const core::Tensor& g : grads_of(op, params)) core::grad_clamp_(g, -clip_value, clip_value);
}

void clip_grad_value(const NamedParameters& params, double clip_value) {
  clip_grad_value(variables(params), clip_value);
}

}  // namespace moegrad::optim
