// The GEMM family, declared once for every backend: row-major operands described once
// (RowMajorGemm), the row-major -> column-major swap written once (to_col_major, used by the
// CBLAS and cuBLAS calls), the grouped MoE products (GemmGroups), and the kernels per dtype T
// (GemmKernels<T, Out>: CBLAS / oneDNN in core/cpu/gemm_kernels.cpp over core/cpu/blas_gemm.h, cuBLAS in
// core/cuda/gemm.cpp; reached through backend<GemmKernels<T>>, core/backend.h).
#pragma once
#include <cstdint>
#include <vector>

#include "core/dtype.h"  // Bf16

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

// Pointers are on `device` (the CPU ignores the index); offsets are host arrays in elements.
// Neither kernel synchronises (CUDA runs on the device's stream). T is the operands' type and Out
// the result's: GemmKernels<float> and <double>, and GemmKernels<Bf16, float> for the mixed
// precision products (bf16 A and B, f32 accumulation, alpha, beta and C; core/precision.h).
template <class T, class Out = T>
struct GemmKernels {
  // for i in [0, batch): C + c_off[i] = alpha * op(A + a_off[i]) @ op(B + b_off[i]) + beta *
  // (C + c_off[i]). Any offsets (repeated ones for broadcast operands) for A and B; C's batches
  // must not overlap. k == 0 scales C by beta (beta == 0 writes zeros); m == 0 or n == 0 does
  // nothing. "[matmul] ..." if a size does not fit the library's integer type.
  void (*strided)(const RowMajorGemm& g, Out alpha, const T* a, const T* b, Out beta, Out* c, std::int64_t batch,
                  const std::int64_t* a_off, const std::int64_t* b_off, const std::int64_t* c_off, int device);
  // Every item of `items` (one per expert with rows): the CPU runs them side by side when they
  // balance over the threads (cpu::gemm_grouped), CUDA as one strided-batched call per distinct
  // size (one call in the padded layout, where every expert has the same row count).
  void (*grouped)(const RowMajorGemm& g, Out alpha, const T* a, const T* b, Out beta, Out* c, const GemmGroups& items,
                  int device);

  static const GemmKernels cpu;   // core/cpu/gemm_kernels.cpp (f32, f64, bf16 -> f32)
  static const GemmKernels cuda;  // core/cuda/gemm.cpp (f32, f64, bf16 -> f32; CUDA builds only)
};

}  // namespace moegrad::core
