// Matrix product. 1-D operands are lifted to matrices with unsqueeze/squeeze (each its own
// recorded view), so the node itself always sees [..., m, k] @ [..., k, n].
#include "autograd/functions.h"
#include "autograd/functions/gemm_inputs.h"
#include "autograd/node.h"
#include "autograd/registry.h"

namespace moegrad::ag {

MOEGRAD_DIFFERENTIABLE("matmul");

namespace {
Variable matmul_nd(const Variable& a, const Variable& b) {
  const core::Precision p = core::gemm_precision();  // recorded: backward runs its GEMMs the same way
  const Tensor A = gemm_input(a.value(), p), B = gemm_input(b.value(), p);
  return record("matmul", core::matmul(A, B), {a, b}, [A, B, p](const Tensor& gy, const Needs& need) {
    const core::GemmPrecisionScope scope(p);
    const Tensor g = gemm_input(gy, p);
    // Broadcast batch dims are summed back by the engine.
    return Grads{need[0] ? core::matmul(g, B, false, true) : Tensor{},   // dA = gY·Bᵀ
                 need[1] ? core::matmul(A, g, true, false) : Tensor{}};  // dB = Aᵀ·gY
  });
}
}  // namespace

Variable matmul(const Variable& a, const Variable& b) {
  MOEGRAD_CHECK(a.dim() >= 1 && b.dim() >= 1, "matmul", "operands must have at least 1 dim, got {} and {}",
                core::describe(a.value()), core::describe(b.value()));
  const bool a_vec = a.dim() == 1, b_vec = b.dim() == 1;
  Variable y = matmul_nd(a_vec ? unsqueeze(a, 0) : a, b_vec ? unsqueeze(b, 1) : b);
  if (b_vec) y = squeeze(y, -1);
  if (a_vec) y = squeeze(y, b_vec ? -1 : -2);
  return y;
}

}  // namespace moegrad::ag
