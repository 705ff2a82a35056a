// Helpers the gating modules share: random draws that a caller may inject, the gumbel
// transform, the threshold routing of choices after the first, and input checks.
#pragma once
#include <string>

#include "layers/moe/routing.h"

namespace moegrad::nn::moe {

// The injected tensor (checked against shape, converted to opt) or a fresh U[0, 1) draw.
Tensor draw_or_take(const Tensor& given, const core::Shape& shape, const char* name, const char* op,
                    core::TensorOptions opt, core::Generator* gen);
// G = -log(clamp(-log(clamp(U, 1e-20)), 1e-20)) in U's dtype (spec §1).
Tensor gumbel_from_uniform(const Tensor& u);
// u8 [T, k]: choice 0 always; choice j >= 1 iff u[j, t] < gates[t, j] / max(threshold[j], eps).
// gates [T, k], u [k, ...] with T elements per choice, threshold [k].
Tensor route_by_threshold(const Tensor& gates, const Tensor& u, const Tensor& threshold, double eps);
// [G, E]: first choices per (group, expert) / n, the balance loss's density_1: those that got a
// slot (after_capacity, st-moe and zeta) or all routed ones (lucidrains), spec §7 C3.
Tensor first_choice_density(const Routing& r, core::DType dtype, bool after_capacity);

}  // namespace moegrad::nn::moe
