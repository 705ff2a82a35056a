// The grouped GEMMs of the MoE fast path on CUDA (core/cuda/moe.h): host code only, cuBLAS
// through cuda::gemm_strided (core/cuda/gemm.h), on the device's stream, no synchronisation.
// Groups with the same row count form one batch: their offsets are host arrays, and
// gemm_strided turns uniform steps (capacity mode: every expert's slice of a padded buffer has
// the same size) into one strided-batched call, others into one call per group.
#include <cuda_runtime_api.h>

#include <algorithm>
#include <map>
#include <utility>
#include <vector>

#include "core/cpu/blas_gemm.h"
#include "core/cuda/check.h"
#include "core/cuda/gemm.h"
#include "core/cuda/moe.h"

namespace moegrad::core::cuda {
namespace {

// The offsets (in elements) of the groups that share one size, in group order.
struct Batch {
  std::vector<std::int64_t> a_off, b_off, c_off;
};

}  // namespace

void grouped_matmul(const Tensor& x, const Tensor& w, const std::vector<std::int64_t>& offsets,
                    bool transpose_w, const Tensor& out) {
  const std::int64_t a = x.size(1), b = out.size(1);
  const std::int64_t groups = static_cast<std::int64_t>(offsets.size()) - 1;
  const int dev = out.device().index;
  // Non-empty groups by row count m: x_e [m, a] @ op(w_e) [a, b] -> out_e [m, b].
  std::map<std::int64_t, Batch> batches;
  for (std::int64_t e = 0; e < groups; ++e) {
    const std::int64_t m = offsets[e + 1] - offsets[e];
    if (m == 0) continue;
    Batch& bt = batches[m];
    bt.a_off.push_back(offsets[e] * a);
    bt.b_off.push_back(e * a * b);
    bt.c_off.push_back(offsets[e] * b);
  }
  if (batches.empty() || b == 0) return;
  if (a == 0) {  // an empty inner dim: out is exactly zero (not left to cuBLAS's k == 0 rule)
    const std::size_t bytes = dtype_size(out.dtype()) * static_cast<std::size_t>(out.numel());
    MOEGRAD_CUDA_CHECK(cudaMemsetAsync(out.raw_data(), 0, bytes, stream(dev)));
    return;
  }
  cpu::RowMajorGemm g;
  g.trans_b = transpose_w;
  g.n = b;
  g.k = a;
  g.lda = std::max<std::int64_t>(1, a);
  g.ldb = std::max<std::int64_t>(1, transpose_w ? a : b);  // w_e stored [b, a] or [a, b]
  g.ldc = std::max<std::int64_t>(1, b);
  visit_floating(x.dtype(), "grouped_matmul", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* xp = x.data<T>();
    const T* wp = w.data<T>();
    T* op = out.data<T>();
    for (const auto& [m, bt] : batches) {
      g.m = m;
      gemm_strided<T>(g, T(1), xp, wp, T(0), op, static_cast<std::int64_t>(bt.a_off.size()),
                      bt.a_off.data(), bt.b_off.data(), bt.c_off.data(), dev);
    }
  });
}

void grouped_matmul_weight_grad(const Tensor& x, const Tensor& gy,
                                const std::vector<std::int64_t>& offsets, bool transpose_w,
                                const Tensor& out) {
  const std::int64_t a = x.size(1), b = gy.size(1);
  const std::int64_t groups = static_cast<std::int64_t>(offsets.size()) - 1;
  const int dev = out.device().index;
  // dW_e = x_e^T @ gy_e [a, b], or gy_e^T @ x_e [b, a]: the first operand transposed by cuBLAS.
  const Tensor& first = transpose_w ? gy : x;
  const Tensor& second = transpose_w ? x : gy;
  const std::int64_t p = first.size(1), q = second.size(1);  // dW_e is [p, q]
  if (groups == 0 || a * b == 0) return;
  // Non-empty groups by row count (the GEMM's inner dim); runs of empty groups [first, end)
  // are zeroed.
  std::map<std::int64_t, Batch> batches;
  std::vector<std::pair<std::int64_t, std::int64_t>> empty_runs;
  for (std::int64_t e = 0; e < groups; ++e) {
    const std::int64_t rows = offsets[e + 1] - offsets[e];
    if (rows == 0) {
      if (!empty_runs.empty() && empty_runs.back().second == e)
        empty_runs.back().second = e + 1;
      else
        empty_runs.emplace_back(e, e + 1);
      continue;
    }
    Batch& bt = batches[rows];
    bt.a_off.push_back(offsets[e] * p);
    bt.b_off.push_back(offsets[e] * q);
    bt.c_off.push_back(e * a * b);
  }
  cpu::RowMajorGemm g;
  g.trans_a = true;
  g.m = p;
  g.n = q;
  g.lda = std::max<std::int64_t>(1, p);
  g.ldb = std::max<std::int64_t>(1, q);
  g.ldc = std::max<std::int64_t>(1, q);
  visit_floating(x.dtype(), "grouped_matmul_weight_grad", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* fp = first.data<T>();
    const T* sp = second.data<T>();
    T* op = out.data<T>();
    cudaStream_t st = stream(dev);
    for (const auto& [e0, e1] : empty_runs)  // an exact zero gradient (all-zero bits are 0.0)
      MOEGRAD_CUDA_CHECK(cudaMemsetAsync(op + e0 * a * b, 0,
                                         sizeof(T) * static_cast<std::size_t>((e1 - e0) * a * b), st));
    for (const auto& [rows, bt] : batches) {
      g.k = rows;
      gemm_strided<T>(g, T(1), fp, sp, T(0), op, static_cast<std::int64_t>(bt.a_off.size()),
                      bt.a_off.data(), bt.b_off.data(), bt.c_off.data(), dev);
    }
  });
}

}  // namespace moegrad::core::cuda
