// CUDA reduction kernels (ReduceKernels::cuda, core/kernels/reduce.h), with the ops and formulas of core/kernels/reduce_math.h
// (the CPU kernels' own). Every reduction is planned as dense x[A, R, B] (core/kernels/reduce_plan.h),
// reducing over R:
//  - R == 1: one elementwise pass;
//  - B == 1, rows up to kWarpRowMax: one warp per row;
//  - B == 1, longer rows: one block per row, or per chunk of a row when there are few rows
//    (the chunks' partials are combined in chunk order by a second kernel);
//  - B > 1: one thread per output column walking R (reads coalesced across columns); R is split
//    in chunks when there are few columns (partials combined in chunk order).
// Trees and chunks depend on the shape only, so results are deterministic. They equal the CPU's
// up to the order of float sums (both accumulate in double).
// One-dim ops (max/min with indices, softmax family, cumsum) take contiguous [A, R, B] lines: a
// warp (short lines) or a block (long lines) per line when B == 1, else a thread per column.
#include "core/kernels/reduce.h"

#include <algorithm>
#include <cstdint>
#include <limits>

#include "core/cuda/launch.cuh"
#include "core/cuda/warp.cuh"
#include "core/kernels/reduce_math.h"
#include "core/kernels/reduce_plan.h"

namespace moegrad::core::cuda {
namespace {

using std::int64_t;

constexpr int64_t kWarpRowMax = 1024;        // lines up to this long get a warp, longer a block
constexpr int64_t kTargetBlocks = 1024;      // split rows while there are fewer blocks
constexpr int64_t kMinChunk = 8192;          // at least this many elements per split block
constexpr int64_t kTargetThreads = 1 << 17;  // column mode: split R while fewer threads
constexpr int64_t kMinColChunk = 32;         // at least this many rows per split thread
constexpr int64_t kMaxBlocks = 65535 * 8;    // grid cap (kernels loop over the rest)

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

unsigned blocks_for_warps(int64_t n) { return blocks_for(n * kWarp); }
unsigned blocks_for_lines(bool block, int64_t n) {
  return block ? static_cast<unsigned>(std::clamp<int64_t>(n, 1, kMaxBlocks)) : blocks_for_warps(n);
}

// The number of elements first, first + step, ... below end.
__device__ inline int64_t count_from(int64_t first, int64_t end, int64_t step) {
  return first < end ? (end - first - 1) / step + 1 : 0;
}

// Folds p[0], p[stride], ..., p[(n - 1) * stride] into acc in that order (loads batched by 4).
template <class Op, class Acc>
__device__ inline Acc fold(const Op& op, Acc acc, const typename Op::In* __restrict__ p, int64_t n,
                           int64_t stride) {
  int64_t i = 0;
  for (; i + 4 <= n; i += 4) {
    const auto v0 = p[i * stride], v1 = p[(i + 1) * stride];
    const auto v2 = p[(i + 2) * stride], v3 = p[(i + 3) * stride];
    acc = op.step(op.step(op.step(op.step(acc, v0), v1), v2), v3);
  }
  for (; i < n; ++i) acc = op.step(acc, p[i * stride]);
  return acc;
}

// ---- the generic reduction: Bind(c) gives the op of output c ----

template <class Op> struct Same {
  Op op;
  __device__ Op operator()(int64_t) const { return op; }
};

template <class Op, class Bind>
__global__ void reduce_single_kernel(const typename Op::In* __restrict__ p, int64_t n, Bind bind,
                                     typename Op::Out* __restrict__ o) {
  MOEGRAD_GRID_STRIDE(i, n) {
    const Op op = bind(i);
    o[i] = op.finalize(op.step(op.identity(), p[i]), 1);
  }
}

// Rows of R contiguous elements, each split in S chunks of `chunk` elements: unit u = a * S + s
// is reduced by one team (warp or block). With S == 1 the team writes out[a], else part[u].
template <bool Block, class Op, class Bind>
__global__ void reduce_rows_kernel(const typename Op::In* __restrict__ p, int64_t A, int64_t R,
                                   int64_t S, int64_t chunk, Bind bind,
                                   typename Op::Out* __restrict__ o, typename Op::Acc* part) {
  using Team = LineTeam<Block>;
  const int64_t lane = Team::lane(), width = Team::width();
  for (int64_t u = Team::first(); u < A * S; u += Team::stride()) {
    const int64_t a = u / S, s = u - a * S;
    const Op op = bind(a);
    const int64_t first = s * chunk + lane, end = std::min(R, (s + 1) * chunk);
    auto acc = fold(op, op.identity(), p + a * R + first, count_from(first, end, width), width);
    acc = Team::reduce(op, acc);
    if (lane == 0) {
      if (S == 1) o[a] = op.finalize(acc, R);
      else part[u] = acc;
    }
  }
}

// Columns: output c = a * B + b folds x[a, r, b] over r. R is split in S chunks of `chunk`
// rows: unit u = s * K + c (K = A * B) is one thread; S == 1 writes out[c], else part[u].
template <class Op, class Bind>
__global__ void reduce_cols_kernel(const typename Op::In* __restrict__ p, int64_t A, int64_t R,
                                   int64_t B, int64_t S, int64_t chunk, Bind bind,
                                   typename Op::Out* __restrict__ o, typename Op::Acc* part) {
  const int64_t K = A * B;
  MOEGRAD_GRID_STRIDE(u, K * S) {
    const int64_t s = u / K, c = u - s * K;
    const int64_t a = c / B, b = c - a * B;
    const Op op = bind(c);
    const int64_t r0 = s * chunk, r1 = std::min(R, r0 + chunk);
    const auto acc = fold(op, op.identity(), p + (a * R + r0) * B + b, r1 - r0, B);
    if (S == 1) o[c] = op.finalize(acc, R);
    else part[u] = acc;
  }
}

// out[c] = the S partials of output c (part[c * cs + s * ss]) combined in chunk order.
template <class Op, class Bind>
__global__ void combine_parts_kernel(const typename Op::Acc* __restrict__ part, int64_t K,
                                     int64_t S, int64_t cs, int64_t ss, int64_t R, Bind bind,
                                     typename Op::Out* __restrict__ o) {
  MOEGRAD_GRID_STRIDE(c, K) {
    const Op op = bind(c);
    auto acc = part[c * cs];
    for (int64_t s = 1; s < S; ++s) acc = op.combine(acc, part[c * cs + s * ss]);
    o[c] = op.finalize(acc, R);
  }
}

template <class T> __global__ void fill_kernel(T* __restrict__ o, int64_t n, T v) {
  MOEGRAD_GRID_STRIDE(i, n) o[i] = v;
}

template <class T> void fill(const Tensor& out, T v) {
  const int64_t n = out.numel();
  if (n == 0) return;
  fill_kernel<T><<<blocks_for(n), kThreads, 0, stream(out.device().index)>>>(out.data<T>(), n, v);
  MOEGRAD_CUDA_CHECK_LAUNCH("reduce");
}

// Runs the reduction of plan P into out (A * B elements); bind(c) gives output c's op.
template <class Op, class Bind>
void run_reduction(const ReducePlan& P, Bind bind, const Tensor& out) {
  using In = typename Op::In;
  using Acc = typename Op::Acc;
  using Out = typename Op::Out;
  const int64_t A = P.A, R = P.R, B = P.B, K = A * B;
  const Device dev = out.device();
  cudaStream_t st = stream(dev.index);
  const In* p = P.data.data<In>();
  Out* o = out.data<Out>();
  if (R == 1) {  // reducing size-1 dims only: an elementwise pass
    reduce_single_kernel<Op><<<blocks_for(K), kThreads, 0, st>>>(p, K, bind, o);
    MOEGRAD_CUDA_CHECK_LAUNCH("reduce");
    return;
  }
  Tensor part;  // per-chunk partials; freed on return, after the kernels are queued
  if (B == 1) {
    if (R <= kWarpRowMax) {
      reduce_rows_kernel<false, Op><<<blocks_for_warps(A), kThreads, 0, st>>>(p, A, R, 1, R, bind,
                                                                              o, nullptr);
      MOEGRAD_CUDA_CHECK_LAUNCH("reduce");
      return;
    }
    int64_t S = 1;
    if (A < kTargetBlocks)
      S = std::max<int64_t>(1, std::min(ceil_div(R, kMinChunk), ceil_div(kTargetBlocks, A)));
    const int64_t chunk = ceil_div(R, S);
    S = ceil_div(R, chunk);
    if (S > 1) part = empty({A * S}, {dtype_of<Acc>(), dev});
    Acc* pp = S > 1 ? part.data<Acc>() : nullptr;
    const unsigned grid = blocks_for_lines(true, A * S);
    reduce_rows_kernel<true, Op><<<grid, kThreads, 0, st>>>(p, A, R, S, chunk, bind, o, pp);
    MOEGRAD_CUDA_CHECK_LAUNCH("reduce");
    if (S > 1) {
      combine_parts_kernel<Op><<<blocks_for(A), kThreads, 0, st>>>(pp, A, S, S, 1, R, bind, o);
      MOEGRAD_CUDA_CHECK_LAUNCH("reduce");
    }
    return;
  }
  int64_t S = 1;
  if (K < kTargetThreads)
    S = std::max<int64_t>(1, std::min(ceil_div(kTargetThreads, K), ceil_div(R, kMinColChunk)));
  const int64_t chunk = ceil_div(R, S);
  S = ceil_div(R, chunk);
  if (S > 1) part = empty({K * S}, {dtype_of<Acc>(), dev});
  Acc* pp = S > 1 ? part.data<Acc>() : nullptr;
  reduce_cols_kernel<Op><<<blocks_for(K * S), kThreads, 0, st>>>(p, A, R, B, S, chunk, bind, o, pp);
  MOEGRAD_CUDA_CHECK_LAUNCH("reduce");
  if (S > 1) {
    combine_parts_kernel<Op><<<blocks_for(K), kThreads, 0, st>>>(pp, K, S, 1, K, R, bind, o);
    MOEGRAD_CUDA_CHECK_LAUNCH("reduce");
  }
}

template <class Op>
void reduce_into(const ReducePlan& rp, const Tensor& out, const Op& op) {
  if (out.numel() == 0) return;
  if (rp.data.numel() == 0) {  // empty reduced extent
    fill(out, op.finalize(op.identity(), 0));
    return;
  }
  run_reduction<Op>(rp, Same<Op>{op}, out);
}

// ---- logsumexp: the shift (max, 0 when infinite), then log(sum exp(x - shift)) + shift ----

template <class T> struct LseShiftOp : math::MaxOp<T> {
  __host__ __device__ T finalize(T a, int64_t) const { return math::lse_shift(a); }
};

// Sum of exp(x - shift) in double for one output, whose shift it holds.
template <class T> struct LseSumOp {
  using In = T;
  using Acc = double;
  using Out = T;
  T shift;
  __host__ __device__ Acc identity() const { return 0.0; }
  __host__ __device__ Acc step(Acc a, T v) const {
    return a + static_cast<double>(math::softmax_exp(v, shift));
  }
  __host__ __device__ Acc combine(Acc a, Acc b) const { return a + b; }
  __host__ __device__ Out finalize(Acc a, int64_t) const { return math::lse_finish<T>(a, shift); }
};

template <class T> struct LseBind {
  const T* shift;
  __device__ LseSumOp<T> operator()(int64_t c) const { return LseSumOp<T>{shift[c]}; }
};

template <class T>
void logsumexp_impl(const ReducePlan& rp, const Tensor& out) {
  const int64_t K = out.numel();
  if (K == 0) return;
  if (rp.data.numel() == 0) {
    fill(out, -std::numeric_limits<T>::infinity());
    return;
  }
  const ReducePlan& P = rp;
  const Tensor shift = empty({K}, {dtype_of<T>(), out.device()});
  run_reduction<LseShiftOp<T>>(P, Same<LseShiftOp<T>>{}, shift);
  run_reduction<LseSumOp<T>>(P, LseBind<T>{shift.data<T>()}, out);
}

// ---- max/min with the index of the first extreme ----

template <class T> struct ValIdx {
  T v;
  int64_t i;  // < 0: no element yet
};
template <class T> __device__ inline ValIdx<T> shfl_down(ValIdx<T> a, unsigned delta) {
  return {cuda::shfl_down(a.v, delta), cuda::shfl_down(a.i, delta)};
}

// The extreme (NaN counts as the extreme) with the lowest index: an order on (value, index), so
// the result does not depend on how elements are grouped.
template <class T, bool IsMax> struct ExtremeOp {
  __device__ ValIdx<T> identity() const { return {T(0), -1}; }
  // Folds elements in increasing index order: only a strictly better value replaces.
  __device__ ValIdx<T> step(ValIdx<T> a, T v, int64_t i) const {
    return (a.i < 0 || math::extreme_better<IsMax>(v, a.v)) ? ValIdx<T>{v, i} : a;
  }
  __device__ ValIdx<T> combine(ValIdx<T> a, ValIdx<T> b) const {
    if (a.i < 0) return b;
    if (b.i < 0) return a;
    const bool take_b = math::extreme_better<IsMax>(b.v, a.v) ||
                        (!math::extreme_better<IsMax>(a.v, b.v) && b.i < a.i);
    return take_b ? b : a;
  }
};

template <bool Block, class T, bool IsMax>
__global__ void extreme_rows_kernel(const T* __restrict__ p, int64_t A, int64_t R,
                                    T* __restrict__ vo, int64_t* __restrict__ io) {
  using Team = LineTeam<Block>;
  const ExtremeOp<T, IsMax> op;
  const int64_t lane = Team::lane(), width = Team::width();
  for (int64_t a = Team::first(); a < A; a += Team::stride()) {
    const T* row = p + a * R;
    ValIdx<T> acc = op.identity();
    for (int64_t r = lane; r < R; r += width) acc = op.step(acc, row[r], r);
    acc = Team::reduce(op, acc);
    if (lane == 0) {
      if (vo) vo[a] = acc.v;
      io[a] = acc.i;
    }
  }
}

template <class T, bool IsMax>
__global__ void extreme_cols_kernel(const T* __restrict__ p, int64_t A, int64_t R, int64_t B,
                                    T* __restrict__ vo, int64_t* __restrict__ io) {
  const ExtremeOp<T, IsMax> op;
  MOEGRAD_GRID_STRIDE(c, A * B) {
    const int64_t a = c / B, b = c - a * B;
    const T* col = p + a * R * B + b;
    ValIdx<T> acc = op.identity();
    for (int64_t r = 0; r < R; ++r) acc = op.step(acc, col[r * B], r);
    if (vo) vo[c] = acc.v;
    io[c] = acc.i;
  }
}

template <bool IsMax>
void extreme_dispatch(const char* name, const Tensor& x, int64_t dim, const Tensor& values,
                      const Tensor& indices) {
  const ReduceLines L = reduce_lines(x.shape(), dim);
  if (L.A * L.B == 0) return;  // size(dim) > 0 by contract
  cudaStream_t st = stream(x.device().index);
  visit_numeric(x.dtype(), name, [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* p = x.data<T>();
    T* vo = values.defined() ? values.data<T>() : nullptr;
    int64_t* io = indices.data<int64_t>();
    if (L.B > 1) {
      const unsigned grid = blocks_for(L.A * L.B);
      extreme_cols_kernel<T, IsMax><<<grid, kThreads, 0, st>>>(p, L.A, L.R, L.B, vo, io);
    } else if (L.R <= kWarpRowMax) {
      const unsigned grid = blocks_for_lines(false, L.A);
      extreme_rows_kernel<false, T, IsMax><<<grid, kThreads, 0, st>>>(p, L.A, L.R, vo, io);
    } else {
      const unsigned grid = blocks_for_lines(true, L.A);
      extreme_rows_kernel<true, T, IsMax><<<grid, kThreads, 0, st>>>(p, L.A, L.R, vo, io);
    }
    MOEGRAD_CUDA_CHECK_LAUNCH(name);
  });
}

// ---- softmax family ----

template <bool Block, class T, bool Log>
__global__ void softmax_rows_kernel(const T* __restrict__ p, int64_t A, int64_t R,
                                    T* __restrict__ o) {
  using Team = LineTeam<Block>;
  const math::MaxOp<T> maxop;
  const math::SumOp<double> sumop;
  const int64_t lane = Team::lane(), width = Team::width();
  for (int64_t a = Team::first(); a < A; a += Team::stride()) {
    const T* row = p + a * R;
    T* dst = o + a * R;
    T m = maxop.identity();
    for (int64_t r = lane; r < R; r += width) m = maxop.step(m, row[r]);
    m = Team::allreduce(maxop, m);
    double s = 0;
    for (int64_t r = lane; r < R; r += width) {
      const T e = math::softmax_exp(row[r], m);
      if constexpr (!Log) dst[r] = e;
      s += e;
    }
    s = Team::allreduce(sumop, s);
    if constexpr (Log) {
      const T ls = math::log_softmax_norm<T>(s);
      for (int64_t r = lane; r < R; r += width) dst[r] = math::log_softmax_out(row[r], m, ls);
    } else {
      const T inv = math::softmax_scale<T>(s);
      for (int64_t r = lane; r < R; r += width) dst[r] *= inv;  // this thread's own exps
    }
  }
}

template <class T, bool Log>
__global__ void softmax_cols_kernel(const T* __restrict__ p, int64_t A, int64_t R, int64_t B,
                                    T* __restrict__ o) {
  const math::MaxOp<T> maxop;
  MOEGRAD_GRID_STRIDE(c, A * B) {
    const int64_t a = c / B, b = c - a * B;
    const T* col = p + a * R * B + b;
    T* dst = o + a * R * B + b;
    T m = maxop.identity();
    for (int64_t r = 0; r < R; ++r) m = maxop.step(m, col[r * B]);
    double s = 0;
    for (int64_t r = 0; r < R; ++r) {
      const T e = math::softmax_exp(col[r * B], m);
      if constexpr (!Log) dst[r * B] = e;
      s += e;
    }
    if constexpr (Log) {
      const T ls = math::log_softmax_norm<T>(s);
      for (int64_t r = 0; r < R; ++r) dst[r * B] = math::log_softmax_out(col[r * B], m, ls);
    } else {
      const T inv = math::softmax_scale<T>(s);
      for (int64_t r = 0; r < R; ++r) dst[r * B] *= inv;
    }
  }
}

template <class T, bool Log> void softmax_impl(const Tensor& x, int64_t dim, const Tensor& out) {
  const ReduceLines L = reduce_lines(x.shape(), dim);
  if (L.A * L.R * L.B == 0) return;
  cudaStream_t st = stream(x.device().index);
  const T* p = x.data<T>();
  T* o = out.data<T>();
  const bool block = L.R > kWarpRowMax;
  const unsigned grid = L.B > 1 ? blocks_for(L.A * L.B) : blocks_for_lines(block, L.A);
  if (L.B > 1)
    softmax_cols_kernel<T, Log><<<grid, kThreads, 0, st>>>(p, L.A, L.R, L.B, o);
  else if (!block)
    softmax_rows_kernel<false, T, Log><<<grid, kThreads, 0, st>>>(p, L.A, L.R, o);
  else
    softmax_rows_kernel<true, T, Log><<<grid, kThreads, 0, st>>>(p, L.A, L.R, o);
  MOEGRAD_CUDA_CHECK_LAUNCH(Log ? "log_softmax" : "softmax");
}

template <bool Block, class T, bool Log>
__global__ void softmax_backward_rows_kernel(const T* __restrict__ g, const T* __restrict__ y,
                                             int64_t A, int64_t R, T* __restrict__ o) {
  using Team = LineTeam<Block>;
  const math::SumOp<double> sumop;
  const int64_t lane = Team::lane(), width = Team::width();
  for (int64_t a = Team::first(); a < A; a += Team::stride()) {
    const T* gr = g + a * R;
    const T* yr = y + a * R;
    T* dst = o + a * R;
    double acc = 0;
    for (int64_t r = lane; r < R; r += width) acc += math::softmax_backward_term<Log>(gr[r], yr[r]);
    const T s = static_cast<T>(Team::allreduce(sumop, acc));
    for (int64_t r = lane; r < R; r += width)
      dst[r] = math::softmax_backward_out<Log>(gr[r], yr[r], s);
  }
}

template <class T, bool Log>
__global__ void softmax_backward_cols_kernel(const T* __restrict__ g, const T* __restrict__ y,
                                             int64_t A, int64_t R, int64_t B, T* __restrict__ o) {
  MOEGRAD_GRID_STRIDE(c, A * B) {
    const int64_t a = c / B, b = c - a * B;
    const int64_t base = a * R * B + b;
    double acc = 0;
    for (int64_t r = 0; r < R; ++r)
      acc += math::softmax_backward_term<Log>(g[base + r * B], y[base + r * B]);
    const T s = static_cast<T>(acc);
    for (int64_t r = 0; r < R; ++r)
      o[base + r * B] = math::softmax_backward_out<Log>(g[base + r * B], y[base + r * B], s);
  }
}

template <class T, bool Log>
void softmax_backward_impl(const Tensor& gy, const Tensor& y, int64_t dim, const Tensor& out) {
  const ReduceLines L = reduce_lines(y.shape(), dim);
  if (L.A * L.R * L.B == 0) return;
  cudaStream_t st = stream(y.device().index);
  const T* g = gy.data<T>();
  const T* yp = y.data<T>();
  T* o = out.data<T>();
  const bool block = L.R > kWarpRowMax;
  const unsigned grid = L.B > 1 ? blocks_for(L.A * L.B) : blocks_for_lines(block, L.A);
  if (L.B > 1)
    softmax_backward_cols_kernel<T, Log><<<grid, kThreads, 0, st>>>(g, yp, L.A, L.R, L.B, o);
  else if (!block)
    softmax_backward_rows_kernel<false, T, Log><<<grid, kThreads, 0, st>>>(g, yp, L.A, L.R, o);
  else
    softmax_backward_rows_kernel<true, T, Log><<<grid, kThreads, 0, st>>>(g, yp, L.A, L.R, o);
  MOEGRAD_CUDA_CHECK_LAUNCH(Log ? "log_softmax_backward" : "softmax_backward");
}

// ---- cumsum ----
// Lines are walked in steps k = 0 .. R-1 (position k, or R-1-k in reverse), split in S chunks of
// C steps. With S > 1: (1) each chunk's total, (2) per line, the exclusive scan of its chunk
// totals (the chunk's carry-in), (3) each chunk scanned from its carry-in. B == 1: a warp per
// chunk of a line (32-step tiles, a shuffle scan per tile); B > 1: a thread per chunk of a column.

struct CumsumGeom {
  int64_t A, R, B, S, C;
  bool exclusive, reverse;
  __device__ int64_t pos(int64_t k) const { return reverse ? R - 1 - k : k; }
};

// Totals of the chunks of rows (B == 1): unit u = a * S + s, a warp each.
template <class T>
__global__ void cumsum_row_totals_kernel(const T* __restrict__ p, CumsumGeom G,
                                         math::AccOf<T>* __restrict__ tot) {
  using Team = LineTeam<false>;
  const math::SumOp<T> op;
  const int64_t lane = Team::lane();
  for (int64_t u = Team::first(); u < G.A * G.S; u += Team::stride()) {
    const int64_t a = u / G.S, s = u - a * G.S;
    const int64_t k0 = s * G.C, k1 = std::min(G.R, k0 + G.C);
    // Positions of a chunk are contiguous either way: [pos(k1 - 1), pos(k0)] in reverse.
    const int64_t lo = G.reverse ? G.R - k1 : k0;
    auto acc = fold(op, op.identity(), p + a * G.R + lo + lane, count_from(lane, k1 - k0, kWarp),
                    kWarp);
    acc = warp_reduce(op, acc);
    if (lane == 0) tot[u] = acc;
  }
}

// Totals of the chunks of columns (B > 1): unit u = s * K + c, a thread each.
template <class T>
__global__ void cumsum_col_totals_kernel(const T* __restrict__ p, CumsumGeom G,
                                         math::AccOf<T>* __restrict__ tot) {
  const math::SumOp<T> op;
  const int64_t K = G.A * G.B;
  MOEGRAD_GRID_STRIDE(u, K * G.S) {
    const int64_t s = u / K, c = u - s * K;
    const int64_t a = c / G.B, b = c - a * G.B;
    const int64_t k0 = s * G.C, k1 = std::min(G.R, k0 + G.C);
    const int64_t lo = G.reverse ? G.R - k1 : k0;
    tot[u] = fold(op, op.identity(), p + (a * G.R + lo) * G.B + b, k1 - k0, G.B);
  }
}

// In place: tot[line, s] becomes the sum of tot[line, s' < s] (chunk order), for each of n lines;
// element (line, s) at line * ls + s * ss.
template <class Acc>
__global__ void cumsum_carry_kernel(Acc* __restrict__ tot, int64_t n, int64_t S, int64_t ls,
                                    int64_t ss) {
  MOEGRAD_GRID_STRIDE(line, n) {
    Acc carry = Acc(0);
    for (int64_t s = 0; s < S; ++s) {
      Acc& t = tot[line * ls + s * ss];
      const Acc v = t;
      t = carry;
      carry += v;
    }
  }
}

// Scan of rows (B == 1): unit u = a * S + s, a warp each, from carry[u] (0 when S == 1).
template <class T>
__global__ void cumsum_rows_kernel(const T* __restrict__ p, CumsumGeom G,
                                   const math::AccOf<T>* __restrict__ carry_in, T* __restrict__ o) {
  using Acc = math::AccOf<T>;
  using Team = LineTeam<false>;
  const int64_t lane = Team::lane();
  for (int64_t u = Team::first(); u < G.A * G.S; u += Team::stride()) {
    const int64_t a = u / G.S, s = u - a * G.S;
    const int64_t k1 = std::min(G.R, (s + 1) * G.C);
    const T* row = p + a * G.R;
    T* dst = o + a * G.R;
    Acc carry = carry_in ? carry_in[u] : Acc(0);
    for (int64_t k0 = s * G.C; k0 < k1; k0 += kWarp) {  // 32-step tiles
      const int64_t k = k0 + lane;
      const bool in = k < k1;
      const int64_t i = G.pos(in ? k : k0);
      const Acc v = in ? static_cast<Acc>(row[i]) : Acc(0);
      Acc incl = v;  // inclusive scan of the tile (Kogge-Stone, fixed order)
      for (int off = 1; off < kWarp; off *= 2) {
        const Acc t = shfl_up(incl, off);
        if (lane >= off) incl += t;
      }
      const Acc before = shfl_up(incl, 1);  // the exclusive prefix (lanes > 0)
      const Acc v_out = G.exclusive ? (lane == 0 ? carry : carry + before) : carry + incl;
      if (in) dst[i] = static_cast<T>(v_out);
      carry += shfl_idx(incl, kWarp - 1);
    }
  }
}

// Scan of columns (B > 1): unit u = s * K + c, a thread each, from carry[u] (0 when S == 1).
template <class T>
__global__ void cumsum_cols_kernel(const T* __restrict__ p, CumsumGeom G,
                                   const math::AccOf<T>* __restrict__ carry_in, T* __restrict__ o) {
  using Acc = math::AccOf<T>;
  const int64_t K = G.A * G.B;
  MOEGRAD_GRID_STRIDE(u, K * G.S) {
    const int64_t s = u / K, c = u - s * K;
    const int64_t a = c / G.B, b = c - a * G.B;
    const int64_t base = a * G.R * G.B + b;
    const int64_t k1 = std::min(G.R, (s + 1) * G.C);
    Acc acc = carry_in ? carry_in[u] : Acc(0);
    for (int64_t k = s * G.C; k < k1; ++k) {
      const int64_t i = base + G.pos(k) * G.B;
      const Acc v = static_cast<Acc>(p[i]);
      if (G.exclusive) {
        o[i] = static_cast<T>(acc);
        acc += v;
      } else {
        acc += v;
        o[i] = static_cast<T>(acc);
      }
    }
  }
}

template <class T>
void cumsum_impl(const Tensor& x, int64_t dim, bool exclusive, bool reverse, const Tensor& out) {
  using Acc = math::AccOf<T>;
  const ReduceLines L = reduce_lines(x.shape(), dim);
  if (L.A * L.R * L.B == 0) return;
  const Device dev = x.device();
  cudaStream_t st = stream(dev.index);
  const T* p = x.data<T>();
  T* o = out.data<T>();
  CumsumGeom G{L.A, L.R, L.B, 1, L.R, exclusive, reverse};
  const int64_t lines = L.A * L.B;
  if (L.B == 1) {
    if (lines < 2048 && L.R > 8192)
      G.S = std::max<int64_t>(1, std::min(ceil_div(L.R, 4096), ceil_div(2048, lines)));
  } else if (lines < 65536 && L.R > 256) {
    G.S = std::max<int64_t>(1, std::min(ceil_div(L.R, 64), ceil_div(65536, lines)));
  }
  G.C = ceil_div(L.R, G.S);
  G.S = ceil_div(L.R, G.C);
  Tensor carry;
  Acc* cp = nullptr;
  if (G.S > 1) {
    carry = empty({lines * G.S}, {dtype_of<Acc>(), dev});
    cp = carry.data<Acc>();
    if (L.B == 1) {
      cumsum_row_totals_kernel<T><<<blocks_for_warps(lines * G.S), kThreads, 0, st>>>(p, G, cp);
      MOEGRAD_CUDA_CHECK_LAUNCH("cumsum");
      cumsum_carry_kernel<Acc><<<blocks_for(lines), kThreads, 0, st>>>(cp, lines, G.S, G.S, 1);
    } else {
      cumsum_col_totals_kernel<T><<<blocks_for(lines * G.S), kThreads, 0, st>>>(p, G, cp);
      MOEGRAD_CUDA_CHECK_LAUNCH("cumsum");
      cumsum_carry_kernel<Acc><<<blocks_for(lines), kThreads, 0, st>>>(cp, lines, G.S, 1, lines);
    }
    MOEGRAD_CUDA_CHECK_LAUNCH("cumsum");
  }
  if (L.B == 1)
    cumsum_rows_kernel<T><<<blocks_for_warps(lines * G.S), kThreads, 0, st>>>(p, G, cp, o);
  else
    cumsum_cols_kernel<T><<<blocks_for(lines * G.S), kThreads, 0, st>>>(p, G, cp, o);
  MOEGRAD_CUDA_CHECK_LAUNCH("cumsum");
}

}  // namespace

#include "core/kernels/reduce_entry_points.inc"

namespace {
template <class T>
__global__ void find_non_finite(const T* __restrict__ x, std::int64_t n, DeviceError* slot, const char* op,
                                const char* what) {
  MOEGRAD_GRID_STRIDE(i, n) {
    if (!isfinite(x[i])) {
      report_error(slot, DeviceErrorKind::non_finite, op, i, 0, n, what);
      return;
    }
  }
}
}  // namespace

void report_non_finite(const Tensor& x, const char* op, const char* what) {
  const std::int64_t n = x.numel();
  if (n == 0) return;
  const int dev = x.device().index;
  visit_floating(x.dtype(), op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    find_non_finite<T><<<blocks_for(n), kThreads, 0, stream(dev)>>>(x.data<T>(), n, device_error_slot(dev), op, what);
    MOEGRAD_CUDA_CHECK_LAUNCH(op);
  });
}

}  // namespace moegrad::core::cuda

namespace moegrad::core {

const ReduceKernels ReduceKernels::cuda = {
    .sum = cuda::sum,
    .mean = cuda::mean,
    .amax = cuda::amax,
    .amin = cuda::amin,
    .logsumexp = cuda::logsumexp,
    .norm = cuda::norm,
    .max = cuda::max,
    .min = cuda::min,
    .argmax = cuda::argmax,
    .argmin = cuda::argmin,
    .softmax = cuda::softmax,
    .log_softmax = cuda::log_softmax,
    .softmax_backward = cuda::softmax_backward,
    .log_softmax_backward = cuda::log_softmax_backward,
    .cumsum = cuda::cumsum,
    .report_non_finite = cuda::report_non_finite,
};

}  // namespace moegrad::core
