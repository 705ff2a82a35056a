// GEMM on row-major strided matrices through CBLAS (OpenBLAS). The row-major -> column-major
// convention is written once here (to_col_major) so the cuBLAS path can reuse it.
#pragma once
#include <cstdint>

namespace moegrad::core::cpu {

// One row-major product C[m, n] = alpha * op(A)[m, k] @ op(B)[k, n] + beta * C.
// Row-major storage: A is [m, k] with row stride lda when !trans_a, or [k, m] with row stride
// lda when trans_a (likewise B); C is [m, n] with row stride ldc. Leading dims must satisfy the
// BLAS rules (ld >= max(1, stored row length)).
struct RowMajorGemm {
  bool trans_a = false, trans_b = false;
  std::int64_t m = 0, n = 0, k = 0;
  std::int64_t lda = 1, ldb = 1, ldc = 1;
};

// The same product as a column-major BLAS call: a row-major C is a column-major C^T, and
// C^T = op(B)^T op(A)^T, so the operands swap places (first = B, second = A) and m <-> n.
struct ColMajorGemm {
  bool trans_first = false, trans_second = false;  // op() on the first / second operand
  std::int64_t m = 0, n = 0, k = 0;
  std::int64_t ld_first = 1, ld_second = 1, ldc = 1;
};

inline ColMajorGemm to_col_major(const RowMajorGemm& g) {
  ColMajorGemm c;
  c.trans_first = g.trans_b;
  c.trans_second = g.trans_a;
  c.m = g.n;
  c.n = g.m;
  c.k = g.k;
  c.ld_first = g.ldb;
  c.ld_second = g.lda;
  c.ldc = g.ldc;
  return c;
}

// Batched strided GEMM: for i in [0, batch): C + c_off[i] = alpha * op(A + a_off[i]) @
// op(B + b_off[i]) + beta * (C + c_off[i]). Offsets are in elements; any offsets (including
// repeated ones for broadcast operands) are fine for A and B; C's batches must not overlap.
// k == 0 scales C by beta (beta == 0 writes zeros); m == 0 or n == 0 does nothing.
// Throws moegrad::Error "[matmul] ..." if a size does not fit BLAS's integer type.
template <class T>
void gemm_strided(const RowMajorGemm& g, T alpha, const T* a, const T* b, T beta, T* c,
                  std::int64_t batch, const std::int64_t* a_off, const std::int64_t* b_off,
                  const std::int64_t* c_off);

extern template void gemm_strided<float>(const RowMajorGemm&, float, const float*, const float*,
                                         float, float*, std::int64_t, const std::int64_t*,
                                         const std::int64_t*, const std::int64_t*);
extern template void gemm_strided<double>(const RowMajorGemm&, double, const double*,
                                          const double*, double, double*, std::int64_t,
                                          const std::int64_t*, const std::int64_t*,
                                          const std::int64_t*);

}  // namespace moegrad::core::cpu
