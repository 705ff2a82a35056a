// The rotary position embedding (RoPE, the half-split form of GPT-NeoX / LLaMA) as one pass:
// x [..., D] (D even) with halves x1 = x[..., :D/2], x2 = x[..., D/2:], and cos, sin broadcast
// to [..., D/2] (one angle per pair):
//   rotary:  (x1 cos - x2 sin, x1 sin + x2 cos)
//   inverse: (x1 cos + x2 sin, x2 cos - x1 sin), the transposed map: the forward's gradient,
//            and the rotation back when cos^2 + sin^2 = 1.
// x may be any view (heads permuted in place); the result is a new contiguous [..., D] tensor.
#pragma once
#include "core/tensor.h"

namespace moegrad::core {

Tensor rotary(const Tensor& x, const Tensor& cos, const Tensor& sin, bool inverse = false);

}  // namespace moegrad::core
