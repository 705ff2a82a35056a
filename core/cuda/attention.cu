// CUDA causal attention (AttentionKernels::cuda, core/kernels/attention.h): a straightforward kernel, one thread per row,
// FP32 accumulation for f32 (the dtype's own), tiles of kTile rows of the other operand staged
// in shared memory and read by every thread of the block at once (broadcast). No float atomics:
// every output row is written by one thread, so results are deterministic.
//
//   forward:  a block of kRows query rows of one (b, h); key tiles up to the block's last row
//             (stage_key_tile); per tile the scores of the visible keys, then the online-softmax
//             combine (core/kernels/attention_math.h) rescales the row's accumulator (kept in out)
//             once per tile.
//   backward: delta[t] = dO_t . O_t (one thread per row); dQ: one thread per query row over key
//             tiles (K, V staged); dK, dV: one thread per key row over the query tiles at or
//             after it (Q, dO, lse, delta staged). The probabilities are recomputed from lse.
// q, k, v and dO are read through their HeadLayout (rows row_stride apart, as the CPU kernel
// reads them); out, lse and the gradients are contiguous.
#include <algorithm>
#include <cstdint>

#include "core/kernels/attention_math.h"
#include "core/kernels/attention.h"
#include "core/cuda/launch.cuh"
#include "core/cuda/runtime.h"
#include "core/error.h"

namespace moegrad::core::cuda {
namespace {

using std::int64_t;
namespace am = attention_math;

constexpr int kRows = 64;  // threads (rows) per block
constexpr int kTile = 32;  // rows of the staged operand per tile

struct Geometry {
  int64_t heads, T, D;
  __host__ __device__ int64_t row_blocks() const { return (T + kRows - 1) / kRows; }
};

// Where the strided operands' heads and rows are (core/kernels/attention.h).
struct Layouts {
  HeadLayout q, k, v, go;
};

__device__ inline int64_t imin(int64_t a, int64_t b) { return a < b ? a : b; }

template <class T>
__device__ T dot(const T* a, const T* b, int64_t D) {
  T acc = 0;
  for (int64_t d = 0; d < D; ++d) acc += a[d] * b[d];
  return acc;
}

// Copies rows [r0, r0 + n) of a head (rows ld apart) into shared memory as [n, D].
template <class T>
__device__ void stage(T* dst, const T* src, int64_t ld, int64_t r0, int n, int64_t D) {
  for (int64_t i = threadIdx.x; i < n * D; i += blockDim.x) dst[i] = src[(r0 + i / D) * ld + i % D];
}

// The key tile [s0, s0 + n) of one head's K and V, n = min(kTile, key_stop - s0), staged into
// ks, vs between two barriers (every thread of the block calls it). Returns how many of the
// tile's keys row t sees: 0 for a row past T (live false) or a tile after the row.
template <class T>
__device__ int64_t stage_key_tile(T* ks, T* vs, const T* k, int64_t lk, const T* v, int64_t lv, int64_t s0,
                                  int64_t key_stop, int64_t t, bool live, int64_t D) {
  const int n = static_cast<int>(imin(kTile, key_stop - s0));
  __syncthreads();  // the previous tile is no longer read
  stage(ks, k, lk, s0, n, D);
  stage(vs, v, lv, s0, n, D);
  __syncthreads();
  return live ? imin(n, am::key_end(t) - s0) : 0;
}

template <class T>
__global__ void forward_kernel(const T* __restrict__ q, const T* __restrict__ k, const T* __restrict__ v,
                               T* __restrict__ out, T* __restrict__ lse, Geometry g, Layouts L, T scale) {
  extern __shared__ __align__(16) unsigned char smem[];
  T* ks = reinterpret_cast<T*>(smem);  // [kTile, D]
  T* vs = ks + kTile * g.D;            // [kTile, D]
  const int64_t h = blockIdx.x / g.row_blocks(), t0 = (blockIdx.x % g.row_blocks()) * kRows;
  const int64_t t = t0 + threadIdx.x, head = h * g.T * g.D;
  const bool live = t < g.T;
  const T* qt = q + L.q.head(h) + t * L.q.row_stride;
  const T* kh = k + L.k.head(h);
  const T* vh = v + L.v.head(h);
  T* ot = out + head + t * g.D;  // the row's accumulator, under the running max
  if (live)
    for (int64_t d = 0; d < g.D; ++d) ot[d] = T(0);
  am::RowStats<T> row = am::empty_row<T>();
  const int64_t key_stop = imin(g.T, t0 + kRows);  // key_end of the block's last row
  for (int64_t s0 = 0; s0 < key_stop; s0 += kTile) {
    const int64_t visible = stage_key_tile(ks, vs, kh, L.k.row_stride, vh, L.v.row_stride, s0, key_stop, t, live, g.D);
    if (visible <= 0) continue;
    T p[kTile];
    T chunk_max = -INFINITY;
#pragma unroll
    for (int j = 0; j < kTile; ++j)
      if (j < visible) {
        p[j] = scale * dot(qt, ks + j * g.D, g.D);
        chunk_max = p[j] > chunk_max ? p[j] : chunk_max;
      }
    T chunk_sum = 0;
#pragma unroll
    for (int j = 0; j < kTile; ++j)
      if (j < visible) {
        p[j] = math::fast_exp(p[j] - chunk_max);
        chunk_sum += p[j];
      }
    const am::RowStats<T> next = am::combine(row, chunk_max, chunk_sum);
    const T old_factor = am::rescale(row.max, next.max), chunk_factor = am::rescale(chunk_max, next.max);
    for (int64_t d = 0; d < g.D; ++d) {
      T acc = 0;
#pragma unroll
      for (int j = 0; j < kTile; ++j)
        if (j < visible) acc += p[j] * vs[j * g.D + d];
      ot[d] = ot[d] * old_factor + acc * chunk_factor;
    }
    row = next;
  }
  if (!live) return;
  const T inv = T(1) / row.sum;
  for (int64_t d = 0; d < g.D; ++d) ot[d] *= inv;
  lse[h * g.T + t] = am::log_sum_exp(row);
}

// delta[i] = dO_i . O_i for every row i = h T + t of every head.
template <class T>
__global__ void delta_kernel(const T* __restrict__ go, const T* __restrict__ o, T* __restrict__ delta, Geometry g,
                             HeadLayout lg) {
  MOEGRAD_GRID_STRIDE(i, g.heads * g.T) {
    const int64_t h = i / g.T, t = i % g.T;
    delta[i] = dot(go + lg.head(h) + t * lg.row_stride, o + i * g.D, g.D);
  }
}

template <class T>
__global__ void dq_kernel(const T* __restrict__ q, const T* __restrict__ k, const T* __restrict__ v,
                          const T* __restrict__ lse, const T* __restrict__ delta, const T* __restrict__ go,
                          T* __restrict__ dq, Geometry g, Layouts L, T scale) {
  extern __shared__ __align__(16) unsigned char smem[];
  T* ks = reinterpret_cast<T*>(smem);  // [kTile, D]
  T* vs = ks + kTile * g.D;            // [kTile, D]
  const int64_t h = blockIdx.x / g.row_blocks(), t0 = (blockIdx.x % g.row_blocks()) * kRows;
  const int64_t t = t0 + threadIdx.x, head = h * g.T * g.D;
  const bool live = t < g.T;
  const T* qt = q + L.q.head(h) + t * L.q.row_stride;
  const T* got = go + L.go.head(h) + t * L.go.row_stride;
  const T* kh = k + L.k.head(h);
  const T* vh = v + L.v.head(h);
  T* dqt = dq + head + t * g.D;
  const T l = live ? lse[h * g.T + t] : T(0), dl = live ? delta[h * g.T + t] : T(0);
  if (live)
    for (int64_t d = 0; d < g.D; ++d) dqt[d] = T(0);
  const int64_t key_stop = imin(g.T, t0 + kRows);
  for (int64_t s0 = 0; s0 < key_stop; s0 += kTile) {
    const int64_t visible = stage_key_tile(ks, vs, kh, L.k.row_stride, vh, L.v.row_stride, s0, key_stop, t, live, g.D);
    if (visible <= 0) continue;
    T ds[kTile];
#pragma unroll
    for (int j = 0; j < kTile; ++j)
      if (j < visible) {
        const T p = am::probability(scale * dot(qt, ks + j * g.D, g.D), l);
        ds[j] = am::score_grad(p, dot(got, vs + j * g.D, g.D), dl);
      }
    for (int64_t d = 0; d < g.D; ++d) {
      T acc = 0;
#pragma unroll
      for (int j = 0; j < kTile; ++j)
        if (j < visible) acc += ds[j] * ks[j * g.D + d];
      dqt[d] += scale * acc;
    }
  }
}

template <class T>
__global__ void dkv_kernel(const T* __restrict__ q, const T* __restrict__ k, const T* __restrict__ v,
                           const T* __restrict__ lse, const T* __restrict__ delta, const T* __restrict__ go,
                           T* __restrict__ dk, T* __restrict__ dv, Geometry g, Layouts L, T scale) {
  extern __shared__ __align__(16) unsigned char smem[];
  T* qs = reinterpret_cast<T*>(smem);  // [kTile, D]
  T* gos = qs + kTile * g.D;           // [kTile, D]
  T* ls = gos + kTile * g.D;           // [kTile]
  T* dls = ls + kTile;                 // [kTile]
  const int64_t h = blockIdx.x / g.row_blocks(), s0 = (blockIdx.x % g.row_blocks()) * kRows;
  const int64_t s = s0 + threadIdx.x, head = h * g.T * g.D;
  const bool live = s < g.T;
  const T* ks = k + L.k.head(h) + s * L.k.row_stride;
  const T* vsr = v + L.v.head(h) + s * L.v.row_stride;
  const T* qh = q + L.q.head(h);
  const T* goh = go + L.go.head(h);
  T* dks = dk + head + s * g.D;
  T* dvs = dv + head + s * g.D;
  if (live)
    for (int64_t d = 0; d < g.D; ++d) dks[d] = dvs[d] = T(0);
  for (int64_t t0 = s0; t0 < g.T; t0 += kTile) {  // queries t >= s0 may see the block's keys
    const int n = static_cast<int>(imin(kTile, g.T - t0));
    __syncthreads();
    stage(qs, qh, L.q.row_stride, t0, n, g.D);
    stage(gos, goh, L.go.row_stride, t0, n, g.D);
    for (int i = threadIdx.x; i < n; i += blockDim.x) {
      ls[i] = lse[h * g.T + t0 + i];
      dls[i] = delta[h * g.T + t0 + i];
    }
    __syncthreads();
    if (!live) continue;
    T p[kTile], ds[kTile];
#pragma unroll
    for (int j = 0; j < kTile; ++j) {
      p[j] = ds[j] = T(0);
      if (j < n && s < am::key_end(t0 + j)) {  // query t0 + j sees key s
        p[j] = am::probability(scale * dot(qs + j * g.D, ks, g.D), ls[j]);
        ds[j] = am::score_grad(p[j], dot(gos + j * g.D, vsr, g.D), dls[j]);
      }
    }
    for (int64_t d = 0; d < g.D; ++d) {
      T acc_v = 0, acc_k = 0;
#pragma unroll
      for (int j = 0; j < kTile; ++j)
        if (j < n) {
          acc_v += p[j] * gos[j * g.D + d];
          acc_k += ds[j] * qs[j * g.D + d];
        }
      dvs[d] += acc_v;
      dks[d] += scale * acc_k;
    }
  }
}

// Dynamic shared memory of `bytes` for kernel on `device`: above the default 48 KiB the kernel
// opts in, up to the device's limit (a larger head dim is one line, not a failed launch).
template <class Kernel>
void allow_shared(Kernel kernel, std::size_t bytes, int device, const Geometry& g) {
  if (bytes <= 48 * 1024) return;
  int limit = 0;
  MOEGRAD_CUDA_CHECK(cudaDeviceGetAttribute(&limit, cudaDevAttrMaxSharedMemoryPerBlockOptin, device));
  MOEGRAD_CHECK(bytes <= static_cast<std::size_t>(limit), "causal_attention",
                "head dim D = {} needs {} bytes of shared memory per block on cuda:{}, more than its {}", g.D, bytes,
                device, limit);
  MOEGRAD_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(bytes)));
}

Geometry geometry_of(const Tensor& q) { return {q.size(0) * q.size(1), q.size(2), q.size(3)}; }
Layouts layouts_of(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& go) {
  return {head_layout(q), head_layout(k), head_layout(v), go.defined() ? head_layout(go) : HeadLayout{}};
}

unsigned grid_of(const Geometry& g) {
  const int64_t blocks = g.heads * g.row_blocks();
  MOEGRAD_CHECK(blocks <= 0x7fffffff, "causal_attention", "{} heads of {} rows need more CUDA blocks than a grid holds",
                g.heads, g.T);
  return static_cast<unsigned>(blocks);
}

}  // namespace

void causal_attention_forward(const Tensor& q, const Tensor& k, const Tensor& v, double scale, const Tensor& out,
                              const Tensor& lse) {
  const Geometry g = geometry_of(q);
  if (g.heads == 0 || g.T == 0) return;
  const int device = q.device().index;
  visit_floating(q.dtype(), "causal_attention", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const std::size_t bytes = 2 * kTile * g.D * sizeof(T);
    allow_shared(forward_kernel<T>, bytes, device, g);
    forward_kernel<T><<<grid_of(g), kRows, bytes, stream(device)>>>(q.data<T>(), k.data<T>(), v.data<T>(),
                                                                   out.data<T>(), lse.data<T>(), g,
                                                                   layouts_of(q, k, v, Tensor{}), static_cast<T>(scale));
    MOEGRAD_CUDA_CHECK_LAUNCH("causal_attention");
  });
}

void causal_attention_backward(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& out,
                               const Tensor& lse, const Tensor& grad_out, double scale, const Tensor& dq,
                               const Tensor& dk, const Tensor& dv) {
  const Geometry g = geometry_of(q);
  if (g.heads == 0 || g.T == 0) return;
  const int device = q.device().index;
  const Tensor delta = empty_for("causal_attention", lse.shape(), {lse.dtype(), lse.device()});
  visit_floating(q.dtype(), "causal_attention", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const Layouts L = layouts_of(q, k, v, grad_out);
    delta_kernel<T><<<blocks_for(g.heads * g.T), kThreads, 0, stream(device)>>>(grad_out.data<T>(), out.data<T>(),
                                                                                delta.data<T>(), g, L.go);
    MOEGRAD_CUDA_CHECK_LAUNCH("causal_attention");
    const std::size_t dq_bytes = 2 * kTile * g.D * sizeof(T);
    allow_shared(dq_kernel<T>, dq_bytes, device, g);
    dq_kernel<T><<<grid_of(g), kRows, dq_bytes, stream(device)>>>(q.data<T>(), k.data<T>(), v.data<T>(),
                                                                  lse.data<T>(), delta.data<T>(),
                                                                  grad_out.data<T>(), dq.data<T>(), g, L,
                                                                  static_cast<T>(scale));
    MOEGRAD_CUDA_CHECK_LAUNCH("causal_attention");
    const std::size_t dkv_bytes = (2 * kTile * g.D + 2 * kTile) * sizeof(T);
    allow_shared(dkv_kernel<T>, dkv_bytes, device, g);
    dkv_kernel<T><<<grid_of(g), kRows, dkv_bytes, stream(device)>>>(q.data<T>(), k.data<T>(), v.data<T>(),
                                                                    lse.data<T>(), delta.data<T>(),
                                                                    grad_out.data<T>(), dk.data<T>(),
                                                                    dv.data<T>(), g, L, static_cast<T>(scale));
    MOEGRAD_CUDA_CHECK_LAUNCH("causal_attention");
  });
}

}  // namespace moegrad::core::cuda

namespace moegrad::core {

const AttentionKernels AttentionKernels::cuda = {&cuda::causal_attention_forward, &cuda::causal_attention_backward};

}  // namespace moegrad::core
