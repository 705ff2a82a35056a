#include "layers/moe/draws.h"

#include <algorithm>
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
  const Tensor g = core::contiguous(core::to_device(gates, core::Device::cpu()));
  const Tensor uu = core::contiguous(core::to_device(core::to_dtype(u, g.dtype()), core::Device::cpu()));
  const Tensor th = core::contiguous(core::to_device(core::to_dtype(threshold, g.dtype()), core::Device::cpu()));
  Tensor active = core::zeros({T, k}, {DType::u8});
  std::uint8_t* a = active.data<std::uint8_t>();
  core::visit_floating(g.dtype(), "route_by_threshold", [&](auto tag) {
    using T_ = typename decltype(tag)::type;
    const T_* gp = g.data<T_>();
    const T_* up = uu.data<T_>();
    const T_* tp = th.data<T_>();
    for (std::int64_t j = 0; j < k; ++j) {
      const T_ denom = std::max(tp[j], static_cast<T_>(eps));  // threshold.clamp(min=eps)
      for (std::int64_t t = 0; t < T; ++t)
        a[t * k + j] = (j == 0 || up[j * T + t] < gp[t * k + j] / denom) ? 1 : 0;
    }
  });
  return active;
}

Tensor first_choice_density(const Routing& r, DType dtype, bool after_capacity) {
  const std::int64_t E = r.num_experts, k = r.top_k;
  Tensor d = core::zeros({r.groups, E}, {DType::f64});
  double* p = d.data<double>();
  const std::int64_t* pos = r.position.data<std::int64_t>();
  const std::int64_t* ex = r.expert.data<std::int64_t>();
  for (std::int64_t g = 0; g < r.groups; ++g)
    for (std::int64_t t = 0; t < r.group_size; ++t) {
      const std::int64_t i = (g * r.group_size + t) * k;
      if (pos[i] >= 0 && (!after_capacity || pos[i] < r.capacity)) p[g * E + ex[i]] += 1.0;
    }
  return core::to_dtype(core::div(d, static_cast<double>(r.group_size)), dtype);
}

void check_finite(const char* op, const Tensor& t, const char* what) {
  if (!ag::all_finite(t)) fail(op, "{} contains NaN or Inf", what);
}

}  // namespace moegrad::nn::moe
