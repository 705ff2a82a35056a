// CPU kernels for the MoE row ops and the grouped GEMM. Row loops go over tokens t (OpenMP
// above kParallelGrain work); dispatch_rows writes distinct rows, so threads never share a
// target. Each output element is accumulated in a fixed order, so results do not depend on
// the thread count.
#include "core/cpu/moe.h"

#include <algorithm>
#include <vector>

#include "core/cpu/blas_gemm.h"
#include "core/cpu/loops.h"

namespace moegrad::core::cpu {

namespace {

// check_rows' pass, keeping its bitset: bit r of the result is set iff some (t, j) targets row r.
std::vector<std::uint64_t> scan_rows(const char* op, const Tensor& row, std::int64_t num_rows,
                                     bool require_distinct, bool& distinct) {
  const std::int64_t* p = row.data<std::int64_t>();
  const std::int64_t n = row.numel();
  // One bit per target row: a serial pass over T * k indices, cheap next to the T * k * d work.
  std::vector<std::uint64_t> seen(static_cast<std::size_t>((num_rows + 63) / 64), 0);
  distinct = true;
  for (std::int64_t i = 0; i < n; ++i) {
    const std::int64_t r = p[i];
    if (r < -1 || r >= num_rows) fail(op, "row index {} out of range [-1, {})", r, num_rows);
    if (r < 0) continue;
    std::uint64_t& word = seen[static_cast<std::size_t>(r / 64)];
    const std::uint64_t bit = std::uint64_t{1} << (r % 64);
    if (word & bit) {
      if (require_distinct) fail(op, "row index {} appears twice", r);
      distinct = false;
    }
    word |= bit;
  }
  return seen;
}

}  // namespace

bool check_rows(const char* op, const Tensor& row, std::int64_t num_rows, bool require_distinct) {
  bool distinct = true;
  scan_rows(op, row, num_rows, require_distinct, distinct);
  return distinct;
}

void dispatch_rows(const Tensor& x, const Tensor& row, const Tensor& scale, const Tensor& out) {
  bool distinct = true;
  const std::vector<std::uint64_t> seen =
      scan_rows("dispatch_rows", row, out.size(0), /*require_distinct=*/true, distinct);
  const std::int64_t n = x.size(0), d = x.size(1), k = row.size(1), R = out.size(0);
  if (R == 0 || d == 0) return;
  const std::int64_t* rp = row.data<std::int64_t>();
  visit_floating(x.dtype(), "dispatch_rows", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* xp = x.data<T>();
    const T* sp = scale.data<T>();
    T* op = out.data<T>();
    // out is not pre-filled: only rows no (t, j) targets are zeroed (none in a compact buffer),
    // the rest are written once by the scatter. One parallel region, two loops.
    const int nthreads = threads_for(std::max(n * k, R) * d);
#pragma omp parallel num_threads(nthreads) if (nthreads > 1)
    {
#pragma omp for schedule(static) nowait
      for (std::int64_t r = 0; r < R; ++r)
        if (!(seen[static_cast<std::size_t>(r / 64)] >> (r % 64) & 1)) std::fill(op + r * d, op + (r + 1) * d, T(0));
#pragma omp for schedule(static)
      for (std::int64_t t = 0; t < n; ++t) {
        const T* xr = xp + t * d;
        for (std::int64_t j = 0; j < k; ++j) {
          const std::int64_t r = rp[t * k + j];
          if (r < 0) continue;
          const T s = sp[t * k + j];
          T* o = op + r * d;
#pragma omp simd
          for (std::int64_t c = 0; c < d; ++c) o[c] = xr[c] * s;
        }
      }
    }
  });
}

void combine_rows(const Tensor& y, const Tensor& row, const Tensor& weight, const Tensor& out) {
  check_rows("combine_rows", row, y.size(0), /*require_distinct=*/false);
  const std::int64_t n = out.size(0), d = out.size(1), k = row.size(1);
  if (n == 0 || d == 0) return;
  const std::int64_t* rp = row.data<std::int64_t>();
  visit_floating(y.dtype(), "combine_rows", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* yp = y.data<T>();
    const T* wp = weight.data<T>();
    T* op = out.data<T>();
    const int nthreads = threads_for(n * std::max<std::int64_t>(k, 1) * d);
#pragma omp parallel for num_threads(nthreads) if (nthreads > 1) schedule(static)
    for (std::int64_t t = 0; t < n; ++t) {
      T* o = op + t * d;
      bool first = true;  // the first routed choice writes o, the rest accumulate: one pass less
      for (std::int64_t j = 0; j < k; ++j) {  // ascending j: a fixed summation order
        const std::int64_t r = rp[t * k + j];
        if (r < 0) continue;
        const T w = wp[t * k + j];
        const T* yr = yp + r * d;
        if (first) {
#pragma omp simd
          for (std::int64_t c = 0; c < d; ++c) o[c] = w * yr[c];
          first = false;
        } else {
#pragma omp simd
          for (std::int64_t c = 0; c < d; ++c) o[c] += w * yr[c];
        }
      }
      if (first) std::fill(o, o + d, T(0));  // no routed choice
    }
  });
}

void row_dot(const Tensor& a, const Tensor& row, const Tensor& b, const Tensor& out) {
  check_rows("row_dot", row, a.size(0), /*require_distinct=*/false);
  const std::int64_t n = b.size(0), d = b.size(1), k = row.size(1);
  if (n == 0 || k == 0) return;
  const std::int64_t* rp = row.data<std::int64_t>();
  visit_floating(a.dtype(), "row_dot", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* ap = a.data<T>();
    const T* bp = b.data<T>();
    T* op = out.data<T>();
    const int nthreads = threads_for(n * k * std::max<std::int64_t>(d, 1));
#pragma omp parallel for num_threads(nthreads) if (nthreads > 1) schedule(static)
    for (std::int64_t t = 0; t < n; ++t) {
      const T* br = bp + t * d;
      for (std::int64_t j = 0; j < k; ++j) {
        const std::int64_t r = rp[t * k + j];
        T acc = T(0);
        if (r >= 0) {
          const T* ar = ap + r * d;
#pragma omp simd reduction(+ : acc)
          for (std::int64_t c = 0; c < d; ++c) acc += ar[c] * br[c];
        }
        op[t * k + j] = acc;
      }
    }
  });
}

void grouped_matmul(const Tensor& x, const Tensor& w, const std::vector<std::int64_t>& offsets,
                    bool transpose_w, const Tensor& out) {
  const std::int64_t a = x.size(1), b = out.size(1);
  const std::int64_t groups = static_cast<std::int64_t>(offsets.size()) - 1;
  RowMajorGemm g;  // x_e [m, a] @ op(w_e) [a, b] -> out_e [m, b]
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
    for (std::int64_t e = 0; e < groups; ++e) {
      g.m = offsets[e + 1] - offsets[e];
      if (g.m == 0) continue;
      const std::int64_t a_off = offsets[e] * a, b_off = e * a * b, c_off = offsets[e] * b;
      gemm_strided<T>(g, T(1), xp, wp, T(0), op, 1, &a_off, &b_off, &c_off);
    }
  });
}

void grouped_matmul_weight_grad(const Tensor& x, const Tensor& gy,
                                const std::vector<std::int64_t>& offsets, bool transpose_w,
                                const Tensor& out) {
  const std::int64_t a = x.size(1), b = gy.size(1);
  const std::int64_t groups = static_cast<std::int64_t>(offsets.size()) - 1;
  // dW_e = x_e^T @ gy_e [a, b], or gy_e^T @ x_e [b, a]: the first operand transposed by BLAS.
  const Tensor& first = transpose_w ? gy : x;
  const Tensor& second = transpose_w ? x : gy;
  const std::int64_t p = first.size(1), q = second.size(1);  // dW_e is [p, q]
  RowMajorGemm g;
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
    for (std::int64_t e = 0; e < groups; ++e) {
      g.k = offsets[e + 1] - offsets[e];
      const std::int64_t c_off = e * a * b;
      if (g.k == 0) {  // no rows in this group: an exact zero gradient
        std::fill(op + c_off, op + c_off + a * b, T(0));
        continue;
      }
      const std::int64_t a_off = offsets[e] * p, b_off = offsets[e] * q;
      gemm_strided<T>(g, T(1), fp, sp, T(0), op, 1, &a_off, &b_off, &c_off);
    }
  });
}

}  // namespace moegrad::core::cpu
