// Gradient clipping by global norm and by value, in place.
#include "optim/clip.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "core/ops.h"
#include "optim/fused_cpu.h"
#include "optim/update_math.h"

namespace moegrad::optim {

namespace {

// The defined gradients, each made contiguous in place (a non-contiguous one is replaced by
// a contiguous copy), on CPU.
std::vector<core::Tensor> grads_of(const char* op, const std::vector<ag::Variable>& params) {
  std::vector<core::Tensor> out;
  for (const ag::Variable& v : params) {
    if (!v.defined() || !v.grad().defined()) continue;
    if (!v.grad().is_contiguous()) v.set_grad(core::clone(v.grad()));
    const core::Tensor& g = v.grad();
    MOEGRAD_CHECK(g.device().is_cpu(), op, "gradient on {}: no kernel for that device in this build",
                  g.device().str());
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

double clip_grad_norm(const std::vector<ag::Variable>& params, double max_norm, double norm_type,
                      bool error_if_nonfinite) {
  const char* op = "clip_grad_norm";
  MOEGRAD_CHECK(max_norm >= 0, op, "invalid max_norm {}: must be >= 0", max_norm);
  MOEGRAD_CHECK(norm_type > 0, op, "invalid norm_type {}: must be > 0 or inf", norm_type);
  const std::vector<core::Tensor> grads = grads_of(op, params);
  if (grads.empty()) return 0.0;

  // Per-tensor norms in the gradient's dtype (as torch.norm gives them), combined in double.
  const bool inf = std::isinf(norm_type);
  double total = 0;
  for (const core::Tensor& g : grads) {
    const double n = core::norm(g, norm_type).item<double>();
    if (inf) {
      total = (n > total || std::isnan(n)) ? n : total;
    } else {
      total += norm_type == 2.0 ? n * n : (norm_type == 1.0 ? n : std::pow(n, norm_type));
    }
  }
  if (!inf) total = norm_type == 2.0 ? std::sqrt(total) : (norm_type == 1.0 ? total : std::pow(total, 1.0 / norm_type));
  MOEGRAD_CHECK(!error_if_nonfinite || std::isfinite(total), op,
                "total norm is {}: the gradients cannot be clipped (error_if_nonfinite is set)", total);

  const double coef = max_norm / (total + 1e-6);
  if (coef >= 1.0) return total;  // clamped to 1: nothing to scale (a NaN coef does scale, like torch)
  for (const core::Tensor& g : grads) {
    core::visit_floating(g.dtype(), op, [&](auto tag) {
      using T = typename decltype(tag)::type;
      cpu::for_each_element(g.numel(), math::Scale<T>{static_cast<T>(coef)}, g.data<T>());
    });
  }
  return total;
}

double clip_grad_norm(const NamedParameters& params, double max_norm, double norm_type, bool error_if_nonfinite) {
  return clip_grad_norm(variables(params), max_norm, norm_type, error_if_nonfinite);
}

void clip_grad_value(const std::vector<ag::Variable>& params, double clip_value) {
  const char* op = "clip_grad_value";
  MOEGRAD_CHECK(clip_value >= 0, op, "invalid clip_value {}: must be >= 0", clip_value);
  for (const core::Tensor& g : grads_of(op, params)) {
    core::visit_floating(g.dtype(), op, [&](auto tag) {
      using T = typename decltype(tag)::type;
      const T c = static_cast<T>(clip_value);
      cpu::for_each_element(g.numel(), math::ClampValue<T>{-c, c}, g.data<T>());
    });
  }
}

void clip_grad_value(const NamedParameters& params, double clip_value) {
  clip_grad_value(variables(params), clip_value);
}

}  // namespace moegrad::optim
