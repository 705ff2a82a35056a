// CPU causal attention: blocks of kBlock query rows. For the rows [t0, t0 + rows) of one
// (b, h) only the keys [0, t0 + rows) are visible, so a block's scores are one
// [rows, keys] GEMM into a per-thread scratch (never [T, T] per (b, h)), the softmax runs on
// those rows in the dtype (FP32 for f32), and the products with V, dO, K, Q are GEMMs on the
// same scratch. Every BLAS call is single-threaded inside the OpenMP loop, as the rest of core
// does (core/cpu/blas_gemm.h). The forward's tasks are (b, h, block), each writing its own rows;
// the backward's are (b, h), since every block of a head adds into the same dK and dV rows.
#include "core/kernels/attention.h"

#include <cblas.h>
#include <omp.h>

#include <algorithm>
#include <cstdint>
#include <vector>

#include "core/kernels/attention_math.h"
#include "core/cpu/blas_gemm.h"
#include "core/dtype.h"

namespace moegrad::core::cpu {
namespace {

using std::int64_t;
namespace am = attention_math;

constexpr int64_t kBlock = 64;  // query rows per block: the scratch is [kBlock, T] per thread

// Concurrent BLAS calls from OpenMP threads, unless OpenBLAS runs its own pthreads
// (openblas_get_parallel() == 1), whose calls would contend for its one pool.
bool threaded() { return openblas_get_parallel() != 1; }

// One row-major product through the project's BLAS path (a batch of one).
template <class T>
void gemm1(bool ta, bool tb, int64_t m, int64_t n, int64_t k, T alpha, const T* a, int64_t lda, const T* b,
           int64_t ldb, T beta, T* c, int64_t ldc) {
  RowMajorGemm g;
  g.trans_a = ta;
  g.trans_b = tb;
  g.m = m;
  g.n = n;
  g.k = k;
  g.lda = lda;
  g.ldb = ldb;
  g.ldc = ldc;
  const int64_t zero = 0;
  gemm_strided<T>(g, alpha, a, b, beta, c, 1, &zero, &zero, &zero);
}

// The shape of one call: B * H heads of T rows of D.
struct Dims {
  int64_t heads, T, D;
  int64_t blocks() const { return (T + kBlock - 1) / kBlock; }
};
Dims dims_of(const Tensor& q) { return {q.size(0) * q.size(1), q.size(2), q.size(3)}; }

// Max and sum of x[0, n) with 8 independent lanes, so they vectorise without reassociation
// flags (a single running sum or max would be a serial chain, as long as the row's exps).
template <class T, class Op>
T row_reduce(const T* x, int64_t n, T init, Op op) {
  T lane[8] = {init, init, init, init, init, init, init, init};
  int64_t j = 0;
  for (; j + 8 <= n; j += 8)
    for (int u = 0; u < 8; ++u) lane[u] = op(lane[u], x[j + u]);
  for (; j < n; ++j) lane[0] = op(lane[0], x[j]);
  for (int u = 1; u < 8; ++u) lane[0] = op(lane[0], lane[u]);
  return lane[0];
}
template <class T> T row_max(const T* x, int64_t n) {
  return row_reduce(x, n, x[0], [](T a, T b) { return a > b ? a : b; });
}
template <class T> T row_sum(const T* x, int64_t n) {
  return row_reduce(x, n, T(0), [](T a, T b) { return a + b; });
}

// Forward of query rows [t0, t0 + rows) of one head: q, k, v, o point at the head's [T, D].
template <class T>
void forward_block(const T* q, const T* k, const T* v, T* o, T* lse, int64_t t0, int64_t rows, int64_t D, T scale,
                   T* s) {
  const int64_t keys = t0 + rows;  // key_end of the block's last row
  gemm1<T>(false, true, rows, keys, D, scale, q + t0 * D, D, k, D, T(0), s, keys);  // S = scale Q K^T
  for (int64_t i = 0; i < rows; ++i) {
    T* row = s + i * keys;
    const int64_t n = am::key_end(t0 + i);
    const T m = row_max(row, n);
    for (int64_t j = 0; j < n; ++j) row[j] = math::fast_exp(row[j] - m);  // vectorised
    const T sum = row_sum(row, n);
    for (int64_t j = n; j < keys; ++j) row[j] = T(0);  // keys after t: masked
    const T inv = T(1) / sum;
    for (int64_t j = 0; j < n; ++j) row[j] *= inv;  // normalised P
    lse[t0 + i] = am::log_sum_exp(am::combine(am::empty_row<T>(), m, sum));
  }
  gemm1<T>(false, false, rows, D, keys, T(1), s, keys, v, D, T(0), o + t0 * D, D);  // O = P V
}

// Backward of one head, block after block (each adds into dk, dv rows [0, keys)).
template <class T>
void backward_head(const T* q, const T* k, const T* v, const T* o, const T* lse, const T* go, T* dq, T* dk,
                   T* dv, int64_t Tn, int64_t D, T scale, T* p, T* dp) {
  std::fill(dk, dk + Tn * D, T(0));
  std::fill(dv, dv + Tn * D, T(0));
  for (int64_t t0 = 0; t0 < Tn; t0 += kBlock) {
    const int64_t rows = std::min(kBlock, Tn - t0), keys = t0 + rows;
    const T* qb = q + t0 * D;
    const T* gob = go + t0 * D;
    gemm1<T>(false, true, rows, keys, D, scale, qb, D, k, D, T(0), p, keys);      // S = scale Q K^T
    gemm1<T>(false, true, rows, keys, D, T(1), gob, D, v, D, T(0), dp, keys);     // dP = dO V^T
    for (int64_t i = 0; i < rows; ++i) {
      const int64_t t = t0 + i, n = am::key_end(t);
      T* pr = p + i * keys;
      T* dpr = dp + i * keys;
      T delta = 0;  // D_t = dO_t . O_t
      for (int64_t d = 0; d < D; ++d) delta += go[t * D + d] * o[t * D + d];
      const T l = lse[t];
      for (int64_t j = 0; j < n; ++j) {
        pr[j] = am::probability(pr[j], l);
        dpr[j] = am::score_grad(pr[j], dpr[j], delta);
      }
      for (int64_t j = n; j < keys; ++j) pr[j] = dpr[j] = T(0);
    }
    gemm1<T>(true, false, keys, D, rows, T(1), p, keys, gob, D, T(1), dv, D);         // dV += P^T dO
    gemm1<T>(false, false, rows, D, keys, scale, dp, keys, k, D, T(0), dq + t0 * D, D);  // dQ = scale dS K
    gemm1<T>(true, false, keys, D, rows, scale, dp, keys, qb, D, T(1), dk, D);        // dK += scale dS^T Q
  }
}

void causal_attention_forward(const Tensor& q, const Tensor& k, const Tensor& v, double scale, const Tensor& out,
                              const Tensor& lse) {
  const Dims d = dims_of(q);
  if (d.heads == 0 || d.T == 0) return;
  visit_floating(q.dtype(), "causal_attention", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T *Q = q.data<T>(), *K = k.data<T>(), *V = v.data<T>();
    T *O = out.data<T>(), *L = lse.data<T>();
    const int64_t tasks = d.heads * d.blocks(), head = d.T * d.D;
#pragma omp parallel if (threaded() && tasks > 1)
    {
      std::vector<T> scratch(static_cast<std::size_t>(std::min(kBlock, d.T) * d.T));
#pragma omp for schedule(dynamic, 1)
      for (int64_t task = 0; task < tasks; ++task) {
        // Largest blocks (the last rows of a head) first, for balance.
        const int64_t h = task % d.heads, blk = d.blocks() - 1 - task / d.heads;
        const int64_t t0 = blk * kBlock, rows = std::min(kBlock, d.T - t0);
        forward_block<T>(Q + h * head, K + h * head, V + h * head, O + h * head, L + h * d.T, t0, rows, d.D,
                         static_cast<T>(scale), scratch.data());
      }
    }
  });
}

void causal_attention_backward(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& out,
                               const Tensor& lse, const Tensor& grad_out, double scale, const Tensor& dq,
                               const Tensor& dk, const Tensor& dv) {
  const Dims d = dims_of(q);
  if (d.heads == 0 || d.T == 0) return;
  visit_floating(q.dtype(), "causal_attention", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T *Q = q.data<T>(), *K = k.data<T>(), *V = v.data<T>(), *O = out.data<T>(), *L = lse.data<T>(),
            *G = grad_out.data<T>();
    T *DQ = dq.data<T>(), *DK = dk.data<T>(), *DV = dv.data<T>();
    const int64_t head = d.T * d.D;
#pragma omp parallel if (threaded() && d.heads > 1)
    {
      const auto n = static_cast<std::size_t>(std::min(kBlock, d.T) * d.T);
      std::vector<T> p(n), dp(n);
#pragma omp for schedule(dynamic, 1)
      for (int64_t h = 0; h < d.heads; ++h)
        backward_head<T>(Q + h * head, K + h * head, V + h * head, O + h * head, L + h * d.T, G + h * head,
                         DQ + h * head, DK + h * head, DV + h * head, d.T, d.D, static_cast<T>(scale), p.data(),
                         dp.data());
    }
  });
}

}  // namespace
}  // namespace moegrad::core::cpu

namespace moegrad::core {

const AttentionKernels AttentionKernels::cpu = {&cpu::causal_attention_forward, &cpu::causal_attention_backward};

}  // namespace moegrad::core
