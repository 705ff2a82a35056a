#include "layers/moe/draws.h"

#include <cmath>

#include "core/error.h"
#include "core/ops.h"

namespace moegrad::nn::moe {

using core::DType;

Tensor draw_or_take(const Tensor& given, const core::Shape& shape, const char* name, const char* op,
                    core::TensorOptions opt, core::Generator* gen) {
  if (!given.defined()) return core::rand(shape, opt, gen);
  MOEGRAD_CHECK(given.shape() == shape, op, "injected {} must have shape {}, got {}", name, core::shape_str(shape),
                core::describe(given));
  return core::contiguous(core::to_device(core::to_dtype(given, opt.dtype), opt.device));
}

Tensor gumbel_from_uniform(const Tensor& u) {
  return core::neg(core::log(core::clamp(core::neg(core::log(core::clamp(u, 1e-20, INFINITY))), 1e-20, INFINITY)));
}

Tensor route_by_threshold(const Tensor& gates, const Tensor& u, const Tensor& threshold, double eps) {
  const std::int64_t T = gates.size(0), k = gates.size(1);
  MOEGRAD_CHECK(u.numel() == T * k && threshold.numel() == k, "route_by_threshold",
                "need u with {} values and threshold [{}], got {} and {}", T * k, k, core::describe(u),
                core::describe(threshold));
  // On the gates' device, in their dtype: u[j, t] < gates[t, j] / threshold[j].clamp(min=eps).
  const core::TensorOptions opt{gates.dtype(), gates.device()};
  const Tensor ut = core::transpose(core::reshape(core::to_device(core::to_dtype(u, opt.dtype), opt.device), {k, T}), 0, 1);
  const Tensor thr = core::clamp(core::to_device(core::to_dtype(core::reshape(threshold, {k}), opt.dtype), opt.device), eps, INFINITY);
  const Tensor first = core::eq(core::arange(k, {DType::i64, opt.device}), 0.0);  // choice 0 always
  return core::to_dtype(core::logical_or(core::lt(ut, core::div(gates, thr)), first), DType::u8);
}

Tensor first_choice_density(const Routing& r, DType dtype, bool after_capacity) {
  const std::int64_t G = r.groups, n = r.group_size;
  // Counted on the routing's device: choice 0 of each token, routed (or kept) at all.
  const Tensor counted = core::ge(core::select(after_capacity ? r.padded_row : r.position, 1, 0), 0.0);
  const Tensor expert = core::reshape(core::contiguous(core::select(r.expert, 1, 0)), {G, n});
  const Tensor ones = core::reshape(core::to_dtype(counted, DType::f64), {G, n});
  const Tensor d = core::scatter_add(core::zeros({G, r.num_experts}, {DType::f64, r.device()}), 1, expert, ones);
  return core::to_dtype(core::div(d, static_cast<double>(n)), dtype);
}

}  // namespace moegrad::nn::moe
