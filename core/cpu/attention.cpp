// CPU causal attention: blocks of kBlock query rows. For the rows [t0, t0 + rows) of one
// (b, h) only the keys [0, t0 + rows) are visible, so a block's scores are one
// [rows, keys] GEMM into a per-thread scratch (never [T, T] per (b, h)), the softmax runs on
// those rows in the dtype (FP32 for f32), and the products with V, dO, K, Q are GEMMs on the
// same scratch. Every BLAS call is single-threaded inside the OpenMP region, as the rest of core
// does (core/cpu/blas_gemm.h). q, k, v and dO are read in place through their HeadLayout
// (rows row_stride apart: the BLAS leading dim).
//
// Forward tasks are (head, block), each writing its own rows. The backward's tasks are (head,
// chunk): a chunk is a run of consecutive query blocks (chunks_of: about equal work each); it
// writes dQ of its rows and adds its blocks' dK, dV (keys [0, its last row]) into a buffer of its
// own, the head's last chunk into dK, dV themselves; then the other chunks' buffers are added in
// chunk order. The chunking depends on the shape alone (B H, T, D, dtype), never on the thread
// count, and no two threads add into one row, so the results are the same bits for any number of
// threads. With B H >= kTargetTasks a head is one chunk: no buffers.
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
// Backward tasks wanted per call: enough for 16 threads with two tasks each. A constant, so the
// chunking (and so the rounding) does not follow the machine's thread count.
constexpr int64_t kTargetTasks = 32;
// At most this many bytes of per-chunk dK, dV buffers per head (long sequences get fewer chunks).
constexpr int64_t kChunkBufferBytes = int64_t{64} << 20;

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

// One strided operand: head i's [T, D] rows at base + layout.head(i), ld apart.
template <class T> struct Operand {
  const T* base;
  HeadLayout layout;
  const T* head(int64_t i) const { return base + layout.head(i); }
  int64_t ld() const { return layout.row_stride; }
};
template <class T> Operand<T> operand(const Tensor& t) { return {t.data<T>(), head_layout(t)}; }

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

// Forward of query rows [t0, t0 + rows) of one head: q, k, v point at the head's rows (leading
// dims lq, lk, lv), o at its contiguous [T, D].
template <class T>
void forward_block(const T* q, int64_t lq, const T* k, int64_t lk, const T* v, int64_t lv, T* o, T* lse, int64_t t0,
                   int64_t rows, int64_t D, T scale, T* s) {
  const int64_t keys = t0 + rows;  // key_end of the block's last row
  gemm1<T>(false, true, rows, keys, D, scale, q + t0 * lq, lq, k, lk, T(0), s, keys);  // S = scale Q K^T
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
  gemm1<T>(false, false, rows, D, keys, T(1), s, keys, v, lv, T(0), o + t0 * D, D);  // O = P V
}

// The backward's chunks of a head: chunk c holds query blocks [first[c], first[c + 1]). As many
// chunks as kTargetTasks asks for over all heads (at most one per block, at most
// kChunkBufferBytes of buffers per head), with about equal work each: block b costs its rows
// times its keys.
struct Chunks {
  std::vector<int64_t> first;
  int64_t count() const { return static_cast<int64_t>(first.size()) - 1; }
  int64_t key_end(int64_t c, int64_t T) const { return std::min(T, first[static_cast<std::size_t>(c) + 1] * kBlock); }
};
Chunks chunks_of(const Dims& d, std::size_t elem) {
  const int64_t blocks = d.blocks();
  const int64_t buffer = std::max<int64_t>(1, 2 * d.T * d.D * static_cast<int64_t>(elem));  // one chunk's dK, dV
  const int64_t count = std::max<int64_t>(
      1, std::min({blocks, (kTargetTasks + d.heads - 1) / d.heads, 1 + kChunkBufferBytes / buffer}));
  auto work = [&](int64_t b) {
    const int64_t rows = std::min(kBlock, d.T - b * kBlock);
    return static_cast<double>(rows) * static_cast<double>(b * kBlock + rows);
  };
  double total = 0;
  for (int64_t b = 0; b < blocks; ++b) total += work(b);
  Chunks c;
  c.first.assign(static_cast<std::size_t>(count) + 1, blocks);
  c.first[0] = 0;
  double done = 0;
  int64_t b = 0;
  for (int64_t i = 1; i < count; ++i) {
    // Blocks whose midpoint falls before the i-th share of the work; at least one per chunk.
    const double target = total * static_cast<double>(i) / static_cast<double>(count);
    while (b < blocks - (count - i) && (b == c.first[static_cast<std::size_t>(i) - 1] || done + work(b) / 2 <= target))
      done += work(b++);
    c.first[static_cast<std::size_t>(i)] = b;
  }
  return c;
}

// Backward of query blocks [b0, b1) of one head: writes dq for their rows and adds their dK, dV
// into dk, dv ([keys, D] contiguous, keys = the last block's key_end, zeroed here first). q, k,
// v, go point at the head's rows (leading dims lq, lk, lv, lg); o, lse, dq at its contiguous rows.
template <class T>
void backward_blocks(const T* q, int64_t lq, const T* k, int64_t lk, const T* v, int64_t lv, const T* o,
                     const T* lse, const T* go, int64_t lg, T* dq, T* dk, T* dv, int64_t b0, int64_t b1, int64_t Tn,
                     int64_t D, T scale, T* p, T* dp) {
  const int64_t key_stop = std::min(Tn, b1 * kBlock);
  std::fill(dk, dk + key_stop * D, T(0));
  std::fill(dv, dv + key_stop * D, T(0));
  for (int64_t t0 = b0 * kBlock; t0 < key_stop; t0 += kBlock) {
    const int64_t rows = std::min(kBlock, Tn - t0), keys = t0 + rows;
    const T* qb = q + t0 * lq;
    const T* gob = go + t0 * lg;
    gemm1<T>(false, true, rows, keys, D, scale, qb, lq, k, lk, T(0), p, keys);  // S = scale Q K^T
    gemm1<T>(false, true, rows, keys, D, T(1), gob, lg, v, lv, T(0), dp, keys);  // dP = dO V^T
    for (int64_t i = 0; i < rows; ++i) {
      const int64_t t = t0 + i, n = am::key_end(t);
      T* pr = p + i * keys;
      T* dpr = dp + i * keys;
      T delta = 0;  // D_t = dO_t . O_t
      for (int64_t d = 0; d < D; ++d) delta += go[t * lg + d] * o[t * D + d];
      const T l = lse[t];
      for (int64_t j = 0; j < n; ++j) {
        pr[j] = am::probability(pr[j], l);
        dpr[j] = am::score_grad(pr[j], dpr[j], delta);
      }
      for (int64_t j = n; j < keys; ++j) pr[j] = dpr[j] = T(0);
    }
    gemm1<T>(true, false, keys, D, rows, T(1), p, keys, gob, lg, T(1), dv, D);          // dV += P^T dO
    gemm1<T>(false, false, rows, D, keys, scale, dp, keys, k, lk, T(0), dq + t0 * D, D);  // dQ = scale dS K
    gemm1<T>(true, false, keys, D, rows, scale, dp, keys, qb, lq, T(1), dk, D);        // dK += scale dS^T Q
  }
}

void causal_attention_forward(const Tensor& q, const Tensor& k, const Tensor& v, double scale, const Tensor& out,
                              const Tensor& lse) {
  const Dims d = dims_of(q);
  if (d.heads == 0 || d.T == 0) return;
  visit_floating(q.dtype(), "causal_attention", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const Operand<T> Q = operand<T>(q), K = operand<T>(k), V = operand<T>(v);
    T *O = out.data<T>(), *L = lse.data<T>();
    const int64_t tasks = d.heads * d.blocks(), head = d.T * d.D;
    // Always a parallel region (one thread for one task): its BLAS calls then run single-threaded,
    // so the rounding does not depend on the thread count.
#pragma omp parallel if (threaded())
    {
      std::vector<T> scratch(static_cast<std::size_t>(std::min(kBlock, d.T) * d.T));
#pragma omp for schedule(dynamic, 1)
      for (int64_t task = 0; task < tasks; ++task) {
        // Largest blocks (the last rows of a head) first, for balance.
        const int64_t h = task % d.heads, blk = d.blocks() - 1 - task / d.heads;
        const int64_t t0 = blk * kBlock, rows = std::min(kBlock, d.T - t0);
        forward_block<T>(Q.head(h), Q.ld(), K.head(h), K.ld(), V.head(h), V.ld(), O + h * head, L + h * d.T, t0,
                         rows, d.D, static_cast<T>(scale), scratch.data());
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
    const Operand<T> Q = operand<T>(q), K = operand<T>(k), V = operand<T>(v), G = operand<T>(grad_out);
    const T *O = out.data<T>(), *L = lse.data<T>();
    T *DQ = dq.data<T>(), *DK = dk.data<T>(), *DV = dv.data<T>();
    const int64_t head = d.T * d.D;
    const Chunks chunks = chunks_of(d, sizeof(T));
    const int64_t nc = chunks.count(), extra = nc - 1;  // chunks per head; those with buffers
    // Heads at a time: all of them, or as many as kChunkBufferBytes of buffers hold.
    const int64_t group =
        extra == 0 ? d.heads
                   : std::clamp<int64_t>(kChunkBufferBytes / std::max<int64_t>(1, extra * 2 * head *
                                                                                       static_cast<int64_t>(sizeof(T))),
                                         1, d.heads);
    const Tensor buffer_tensor =
        empty_for("causal_attention", {group * extra * 2 * head}, {q.dtype(), Device::cpu()});
    T* const buffers = buffer_tensor.data<T>();
    for (int64_t h0 = 0; h0 < d.heads; h0 += group) {
      const int64_t heads = std::min(group, d.heads - h0);
      // Chunk c < nc - 1 of head h0 + i adds into its buffer pair; the last chunk into dK, dV.
      auto buffer_k = [&](int64_t i, int64_t c) { return buffers + ((i * extra + c) * 2) * head; };
      auto buffer_v = [&](int64_t i, int64_t c) { return buffer_k(i, c) + head; };
      const int64_t tasks = heads * nc, sums = extra == 0 ? 0 : heads * d.blocks();
#pragma omp parallel if (threaded())
      {
        const auto n = static_cast<std::size_t>(std::min(kBlock, d.T) * d.T);
        std::vector<T> p(n), dp(n);
#pragma omp for schedule(dynamic, 1)
        for (int64_t task = 0; task < tasks; ++task) {
          const int64_t i = task % heads, c = nc - 1 - task / heads, h = h0 + i;  // the last chunks first
          const bool last = c == nc - 1;
          backward_blocks<T>(Q.head(h), Q.ld(), K.head(h), K.ld(), V.head(h), V.ld(), O + h * head, L + h * d.T,
                             G.head(h), G.ld(), DQ + h * head, last ? DK + h * head : buffer_k(i, c),
                             last ? DV + h * head : buffer_v(i, c), chunks.first[static_cast<std::size_t>(c)],
                             chunks.first[static_cast<std::size_t>(c) + 1], d.T, d.D, static_cast<T>(scale), p.data(),
                             dp.data());
        }
        // (the loop's barrier) Then the buffers into dK, dV, block by block of key rows, chunk after
        // chunk (the region's end is the barrier).
#pragma omp for schedule(static) nowait
        for (int64_t task = 0; task < sums; ++task) {
          const int64_t i = task / d.blocks(), s0 = (task % d.blocks()) * kBlock, h = h0 + i;
          for (int64_t c = 0; c < extra; ++c) {
            const int64_t stop = std::min(s0 + kBlock, chunks.key_end(c, d.T));
            T* dkh = DK + h * head;
            T* dvh = DV + h * head;
            const T* bk = buffer_k(i, c);
            const T* bv = buffer_v(i, c);
            for (int64_t e = s0 * d.D; e < stop * d.D; ++e) {
              dkh[e] += bk[e];
              dvh[e] += bv[e];
            }
          }
        }
      }
    }
  });
}

}  // namespace
}  // namespace moegrad::core::cpu

namespace moegrad::core {

const AttentionKernels AttentionKernels::cpu = {&cpu::causal_attention_forward, &cpu::causal_attention_backward};

}  // namespace moegrad::core
