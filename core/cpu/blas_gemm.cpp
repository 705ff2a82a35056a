#include "core/cpu/blas_gemm.h"

#include <cblas.h>
#include <omp.h>

#include <algorithm>
#include <climits>
#include <numeric>
#include <type_traits>

#include "core/cpu/gemm_engine.h"
#include "core/error.h"

namespace moegrad::core::cpu {
namespace {

void dgemm(const ColMajorGemm& g, double alpha, const double* first, const double* second,
           double beta, double* c) {
  cblas_dgemm(CblasColMajor, g.trans_first ? CblasTrans : CblasNoTrans,
              g.trans_second ? CblasTrans : CblasNoTrans, static_cast<int>(g.m),
              static_cast<int>(g.n), static_cast<int>(g.k), alpha, first,
              static_cast<int>(g.ld_first), second, static_cast<int>(g.ld_second), beta, c,
              static_cast<int>(g.ldc));
}

// One product on the calling thread(s): f32 through the selected engine (gemm_engine.h), f64
// through OpenBLAS dgemm (gradcheck's path).
void blas_call(const RowMajorGemm& g, float alpha, const float* a, const float* b, float beta, float* c) {
  gemm_engine().sgemm(g, alpha, a, b, beta, c);
}
void blas_call(const RowMajorGemm& g, double alpha, const double* a, const double* b, double beta, double* c) {
  dgemm(to_col_major(g), alpha, b, a, beta, c);
}
void blas_call(const RowMajorGemm& g, float alpha, const Bf16* a, const Bf16* b, float beta, float* c) {
  gemm_engine().gemm_bf16(g, alpha, a, b, beta, c);
}

// Selects the f32 engine (MOEGRAD_GEMM is read on first use, and may throw) before any parallel
// region calls it.
template <class T>
void resolve_engine() {
  if constexpr (!std::is_same_v<T, double>) (void)gemm_engine();
}

// C[m, n] (row stride ldc) = beta * C, with beta == 0 writing zeros (BLAS semantics).
template <class T>
void scale_rows(T* c, std::int64_t m, std::int64_t n, std::int64_t ldc, T beta) {
  for (std::int64_t i = 0; i < m; ++i) {
    T* row = c + i * ldc;
    if (beta == T(0)) {
      for (std::int64_t j = 0; j < n; ++j) row[j] = T(0);
    } else if (beta != T(1)) {
      for (std::int64_t j = 0; j < n; ++j) row[j] *= beta;
    }
  }
}

// Below this many multiply-adds one GEMM is one BLAS call (OpenBLAS then picks its threads).
constexpr std::int64_t kSplitMacs = std::int64_t{1} << 18;

// Whether moegrad may spread BLAS calls over its `threads` OpenMP threads here, one
// single-threaded call each: more than one thread, not already inside a parallel region, and
// not a pthread OpenBLAS build, whose concurrent calls would contend for its one thread pool.
bool may_thread_blas_calls(int threads) {
  return threads > 1 && !omp_in_parallel() && openblas_get_parallel() != 1;
}

// Sizes the BLAS takes as int.
void check_blas_range(const RowMajorGemm& g) {
  for (std::int64_t v : {g.m, g.n, g.k, g.lda, g.ldb, g.ldc})
    MOEGRAD_CHECK(v <= INT_MAX, "matmul", "size {} exceeds the BLAS integer range", v);
}

// One product over `threads` threads: C's rows (or its columns when m < n / 4) in contiguous
// blocks, one single-threaded BLAS call per thread. OpenBLAS 0.3.21's own threading does worse
// on the narrow and short GEMMs of the MoE layers on 2 cores ([2048, 1024] @ [1024, 64]: 157 vs
// 226 GFLOP/s; [40, 1024] @ [1024, 1024]: 130 vs 203) and no better on the square ones.
template <class T, class Out>
void gemm_split(const RowMajorGemm& g, Out alpha, const T* a, const T* b, Out beta, Out* c, int threads) {
  const bool by_rows = g.m * 4 >= g.n;
  const std::int64_t extent = by_rows ? g.m : g.n;
#pragma omp parallel num_threads(threads)
  {
    const std::int64_t p = omp_get_thread_num(), parts = omp_get_num_threads();
    const std::int64_t lo = extent * p / parts, hi = extent * (p + 1) / parts;
    if (hi > lo) {
      RowMajorGemm part = g;
      const T *pa = a, *pb = b;
      Out* pc = c;
      if (by_rows) {  // rows lo..hi of op(A) and C
        part.m = hi - lo;
        pa += g.trans_a ? lo : lo * g.lda;
        pc += lo * g.ldc;
      } else {  // columns lo..hi of op(B) and C
        part.n = hi - lo;
        pb += g.trans_b ? lo * g.ldb : lo;
        pc += lo;
      }
      blas_call(part, alpha, pa, pb, beta, pc);
    }
  }
}

// One product: split over the threads when it is large enough and nothing else runs.
template <class T, class Out>
void gemm_one(const RowMajorGemm& g, Out alpha, const T* a, const T* b, Out beta, Out* c) {
  const int threads = omp_get_max_threads();
  if (g.m * g.n * g.k >= kSplitMacs && std::max(g.m, g.n) >= threads && may_thread_blas_calls(threads))
    gemm_split(g, alpha, a, b, beta, c, threads);
  else
    blas_call(g, alpha, a, b, beta, c);
}

}  // namespace

template <class T, class Out>
void gemm_strided(const RowMajorGemm& g, Out alpha, const T* a, const T* b, Out beta, Out* c,
                  std::int64_t batch, const std::int64_t* a_off, const std::int64_t* b_off,
                  const std::int64_t* c_off) {
  if (batch == 0 || g.m == 0 || g.n == 0) return;
  if (g.k == 0 || alpha == Out(0)) {
    for (std::int64_t i = 0; i < batch; ++i) scale_rows(c + c_off[i], g.m, g.n, g.ldc, beta);
    return;
  }
  check_blas_range(g);
  resolve_engine<T>();
  const int threads = omp_get_max_threads();
  if (batch >= threads && batch * g.m * g.n * g.k >= kSplitMacs && may_thread_blas_calls(threads)) {
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads)
    for (std::int64_t i = 0; i < batch; ++i)  // equal products side by side, one BLAS call per thread
      blas_call(g, alpha, a + a_off[i], b + b_off[i], beta, c + c_off[i]);
    return;
  }
  for (std::int64_t i = 0; i < batch; ++i) gemm_one(g, alpha, a + a_off[i], b + b_off[i], beta, c + c_off[i]);
}

std::vector<std::int64_t> side_by_side_order(const GemmGroups& items, int threads, std::int64_t macs_per_size) {
  const auto count = static_cast<std::int64_t>(items.size.size());
  if (count < threads || !may_thread_blas_calls(threads)) return {};
  const std::int64_t total = std::accumulate(items.size.begin(), items.size.end(), std::int64_t{0});
  const std::int64_t largest = *std::max_element(items.size.begin(), items.size.end());
  if (largest * threads > total || total * macs_per_size < kSplitMacs) return {};
  std::vector<std::int64_t> order(static_cast<std::size_t>(count));
  std::iota(order.begin(), order.end(), std::int64_t{0});
  std::stable_sort(order.begin(), order.end(),
                   [&](std::int64_t x, std::int64_t y) { return items.size[x] > items.size[y]; });
  return order;
}

template <class T, class Out>
void gemm_grouped(const RowMajorGemm& g, Out alpha, const T* a, const T* b, Out beta, Out* c,
                  const GemmGroups& items) {
  if (items.size.empty()) return;
  // No exception may leave a parallel region: gemm_strided's only throw is the size check,
  // made here first for the largest item.
  RowMajorGemm largest = g;
  (items.vary_k ? largest.k : largest.m) = *std::max_element(items.size.begin(), items.size.end());
  check_blas_range(largest);
  resolve_engine<T>();
  for_each_gemm_item(items, items.vary_k ? g.m * g.n : g.n * g.k, [&](std::int64_t i) {
    RowMajorGemm gi = g;
    (items.vary_k ? gi.k : gi.m) = items.size[i];
    gemm_strided<T, Out>(gi, alpha, a, b, beta, c, 1, &items.a_off[i], &items.b_off[i], &items.c_off[i]);
  });
}

template void gemm_grouped<float>(const RowMajorGemm&, float, const float*, const float*, float,
                                  float*, const GemmGroups&);
template void gemm_grouped<double>(const RowMajorGemm&, double, const double*, const double*,
                                   double, double*, const GemmGroups&);

template void gemm_grouped<Bf16, float>(const RowMajorGemm&, float, const Bf16*, const Bf16*, float, float*,
                                        const GemmGroups&);
template void gemm_strided<Bf16, float>(const RowMajorGemm&, float, const Bf16*, const Bf16*, float, float*,
                                        std::int64_t, const std::int64_t*, const std::int64_t*, const std::int64_t*);

template void gemm_strided<float>(const RowMajorGemm&, float, const float*, const float*, float,
                                  float*, std::int64_t, const std::int64_t*, const std::int64_t*,
                                  const std::int64_t*);
template void gemm_strided<double>(const RowMajorGemm&, double, const double*, const double*,
                                   double, double*, std::int64_t, const std::int64_t*,
                                   const std::int64_t*, const std::int64_t*);

}  // namespace moegrad::core::cpu
