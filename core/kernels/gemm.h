// The GEMM description shared by every backend: row-major operands described once
// (RowMajorGemm), the row-major -> column-major swap written once (to_col_major, used by the
// CBLAS and cuBLAS calls), and the grouped MoE products (GemmGroups). Device-neutral host code.
#pragma once
#include <cstdint>
#include <vector>

namespace moegrad::core {

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

// Independent products that share one RowMajorGemm except one size (m, or k when vary_k) and
// their operand offsets: item i is that product with the size set to size[i], at A + a_off[i],
// B + b_off[i], C + c_off[i] (the grouped MoE GEMMs: one item per expert with rows).
struct GemmGroups {
  bool vary_k = false;
  std::vector<std::int64_t> size, a_off, b_off, c_off;
  void add(std::int64_t item_size, std::int64_t a, std::int64_t b, std::int64_t c) {
    size.push_back(item_size);
    a_off.push_back(a);
    b_off.push_back(b);
    c_off.push_back(c);
  }
};

}  // namespace moegrad::core
