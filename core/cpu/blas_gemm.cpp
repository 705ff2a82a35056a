#include "core/cpu/blas_gemm.h"

#include <cblas.h>

#include <climits>

#include "core/error.h"

namespace moegrad::core::cpu {
namespace {

void sgemm(const ColMajorGemm& g, float alpha, const float* first, const float* second,
           float beta, float* c) {
  cblas_sgemm(CblasColMajor, g.trans_first ? CblasTrans : CblasNoTrans,
              g.trans_second ? CblasTrans : CblasNoTrans, static_cast<int>(g.m),
              static_cast<int>(g.n), static_cast<int>(g.k), alpha, first,
              static_cast<int>(g.ld_first), second, static_cast<int>(g.ld_second), beta, c,
              static_cast<int>(g.ldc));
}

void dgemm(const ColMajorGemm& g, double alpha, const double* first, const double* second,
           double beta, double* c) {
  cblas_dgemm(CblasColMajor, g.trans_first ? CblasTrans : CblasNoTrans,
              g.trans_second ? CblasTrans : CblasNoTrans, static_cast<int>(g.m),
              static_cast<int>(g.n), static_cast<int>(g.k), alpha, first,
              static_cast<int>(g.ld_first), second, static_cast<int>(g.ld_second), beta, c,
              static_cast<int>(g.ldc));
}

void blas_call(const ColMajorGemm& g, float alpha, const float* first, const float* second,
               float beta, float* c) {
  sgemm(g, alpha, first, second, beta, c);
}
void blas_call(const ColMajorGemm& g, double alpha, const double* first, const double* second,
               double beta, double* c) {
  dgemm(g, alpha, first, second, beta, c);
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

}  // namespace

template <class T>
void gemm_strided(const RowMajorGemm& g, T alpha, const T* a, const T* b, T beta, T* c,
                  std::int64_t batch, const std::int64_t* a_off, const std::int64_t* b_off,
                  const std::int64_t* c_off) {
  if (batch == 0 || g.m == 0 || g.n == 0) return;
  if (g.k == 0 || alpha == T(0)) {
    for (std::int64_t i = 0; i < batch; ++i) scale_rows(c + c_off[i], g.m, g.n, g.ldc, beta);
    return;
  }
  for (std::int64_t v : {g.m, g.n, g.k, g.lda, g.ldb, g.ldc})
    MOEGRAD_CHECK(v <= INT_MAX, "matmul", "size {} exceeds the BLAS integer range", v);
  const ColMajorGemm cm = to_col_major(g);
  for (std::int64_t i = 0; i < batch; ++i)
    blas_call(cm, alpha, b + b_off[i], a + a_off[i], beta, c + c_off[i]);
}

template void gemm_strided<float>(const RowMajorGemm&, float, const float*, const float*, float,
                                  float*, std::int64_t, const std::int64_t*, const std::int64_t*,
                                  const std::int64_t*);
template void gemm_strided<double>(const RowMajorGemm&, double, const double*, const double*,
                                   double, double*, std::int64_t, const std::int64_t*,
                                   const std::int64_t*, const std::int64_t*);

}  // namespace moegrad::core::cpu
