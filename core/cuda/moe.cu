// CUDA row kernels of the MoE fast path (MoeKernels::cuda, core/kernels/moe.h). No float
// atomics: every output element is written by one thread in a fixed order, so results are deterministic and follow the
// CPU kernels' arithmetic (row_dot aside, whose sums are in another, fixed order). Threads run along the feature dim d (16-byte vectors when d and the pointers
// allow), so a warp reads whole row segments. Row values are checked where they are read and
// bad ones recorded in the device's error slot (raised at the next synchronisation).
//
//   dispatch_rows: fill inv[R] = -1; one thread per (t, j) claims inv[row[t,j]] = t * k + j
//                  (an integer atomicCAS: a failed claim is a repeated row); then one pass over
//                  the output rows: out[r] = x[t] * scale[t,j], or 0 where inv[r] = -1.
//   combine_rows:  one thread per (t, column): out[t,c] = sum over j ascending of w * y[row, c],
//                  each product and sum rounded as the CPU does (no fused multiply-add).
//   row_dot:       a group of G <= 32 lanes per (t, j): strided partial sums, then a fixed
//                  butterfly of warp shuffles.
//   assign_slots:  one thread per group runs core/kernels/moe_slots_math.h (the CPU's loop); groups
//                  are few (b), so this is a short serial pass that saves a copy to the host.
//   check_rows:    a bitset of targeted rows (integer atomicOr) and a "repeated" flag, copied
//                  back to the host (the one synchronisation).
#include <algorithm>
#include <cstdint>
#include <initializer_list>
#include <type_traits>

#include "core/cuda/launch.cuh"
#include "core/kernels/moe.h"
#include "core/cuda/runtime.h"
#include "core/kernels/moe_slots_math.h"

namespace moegrad::core::cuda {
namespace {

using std::int64_t;

// V consecutive elements loaded or stored as one 16-byte access (V = 1: plain scalars).
template <class T, int V> struct alignas(sizeof(T) * V) Vec {
  T v[V];
};

// Products and sums rounded separately, as the CPU loops compute them (nvcc would otherwise
// contract a * b + c into one fused multiply-add).
__device__ inline float mul_rn(float a, float b) { return __fmul_rn(a, b); }
__device__ inline double mul_rn(double a, double b) { return __dmul_rn(a, b); }
__device__ inline float add_rn(float a, float b) { return __fadd_rn(a, b); }
__device__ inline double add_rn(double a, double b) { return __dadd_rn(a, b); }

__device__ inline bool row_in_range(int64_t r, int64_t num_rows) { return r >= -1 && r < num_rows; }

__global__ void fill_i64(int64_t* p, int64_t n, int64_t value) {
  MOEGRAD_GRID_STRIDE(i, n) p[i] = value;
}

// check_rows: bit r of seen set iff some (t, j) targets row r; *repeated = 1 if one is hit twice.
__global__ void mark_rows(const int64_t* __restrict__ row, int64_t n, int64_t num_rows,
                          unsigned long long* seen, int64_t* repeated, bool require_distinct,
                          DeviceError* slot, const char* op) {
  MOEGRAD_GRID_STRIDE(i, n) {
    const int64_t r = row[i];
    if (!row_in_range(r, num_rows)) {
      report_error(slot, DeviceErrorKind::row_out_of_range, op, r, -1, num_rows);
      continue;
    }
    if (r < 0) continue;
    const unsigned long long bit = 1ull << (r % 64);
    if (atomicOr(&seen[r / 64], bit) & bit) {
      *repeated = 1;  // every writer stores the same value
      if (require_distinct) report_error(slot, DeviceErrorKind::row_repeated, op, r, -1, num_rows);
    }
  }
}

// dispatch_rows, pass 1: inv[row[p]] = p for each pair p = t * k + j (inv filled with -1).
__global__ void claim_rows(const int64_t* __restrict__ row, int64_t n, int64_t num_rows,
                           int64_t* inv, DeviceError* slot, const char* op) {
  MOEGRAD_GRID_STRIDE(p, n) {
    const int64_t r = row[p];
    if (!row_in_range(r, num_rows)) {
      report_error(slot, DeviceErrorKind::row_out_of_range, op, r, -1, num_rows);
      continue;
    }
    if (r < 0) continue;
    auto* slot_r = reinterpret_cast<unsigned long long*>(inv + r);
    if (atomicCAS(slot_r, static_cast<unsigned long long>(-1ll), static_cast<unsigned long long>(p)) !=
        static_cast<unsigned long long>(-1ll))
      report_error(slot, DeviceErrorKind::row_repeated, op, r, -1, num_rows);
  }
}

// Grid of the row kernels: x along vector columns (blockDim.x a power of two up to kThreads,
// the rest of the block takes more rows), y strides over the rows.
struct RowGrid {
  dim3 grid, block;
};

RowGrid row_grid(int64_t rows, int64_t cols) {
  unsigned bx = 1;
  while (bx < static_cast<std::uint64_t>(cols) && bx < static_cast<unsigned>(kThreads)) bx *= 2;
  const unsigned by = static_cast<unsigned>(kThreads) / bx;
  const int64_t gx = (cols + bx - 1) / bx;
  const int64_t gy = std::clamp<int64_t>((rows + by - 1) / by, 1, 65535);
  return {dim3(static_cast<unsigned>(gx), static_cast<unsigned>(gy)), dim3(bx, by)};
}

// dispatch_rows, pass 2: every output row written once (dv = d / V vector columns).
template <class T, int V>
__global__ void gather_rows(const T* __restrict__ x, const T* __restrict__ scale,
                            const int64_t* __restrict__ inv, T* __restrict__ out, int64_t R,
                            int64_t k, int64_t dv) {
  using W = Vec<T, V>;
  const int64_t c = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (c >= dv) return;
  for (int64_t r = static_cast<int64_t>(blockIdx.y) * blockDim.y + threadIdx.y; r < R;
       r += static_cast<int64_t>(gridDim.y) * blockDim.y) {
    const int64_t p = inv[r];
    W o;
    if (p < 0) {
#pragma unroll
      for (int i = 0; i < V; ++i) o.v[i] = T(0);
    } else {
      const T s = scale[p];
      const W xv = reinterpret_cast<const W*>(x)[(p / k) * dv + c];
#pragma unroll
      for (int i = 0; i < V; ++i) o.v[i] = mul_rn(xv.v[i], s);
    }
    reinterpret_cast<W*>(out)[r * dv + c] = o;
  }
}

// combine_rows: out[t, c] = sum over j ascending of weight[t,j] * y[row[t,j], c]; the first
// routed choice writes, the rest accumulate (as the CPU kernel), 0 when none is routed.
template <class T, int V>
__global__ void combine_kernel(const T* __restrict__ y, const int64_t* __restrict__ row,
                               const T* __restrict__ weight, T* __restrict__ out, int64_t n,
                               int64_t k, int64_t R, int64_t dv, DeviceError* slot,
                               const char* op) {
  using W = Vec<T, V>;
  const int64_t c = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (c >= dv) return;
  for (int64_t t = static_cast<int64_t>(blockIdx.y) * blockDim.y + threadIdx.y; t < n;
       t += static_cast<int64_t>(gridDim.y) * blockDim.y) {
    W o;
    bool first = true;
    for (int64_t j = 0; j < k; ++j) {
      const int64_t r = row[t * k + j];
      if (!row_in_range(r, R)) {
        if (c == 0) report_error(slot, DeviceErrorKind::row_out_of_range, op, r, -1, R);
        continue;
      }
      if (r < 0) continue;
      const T w = weight[t * k + j];
      const W yv = reinterpret_cast<const W*>(y)[r * dv + c];
      if (first) {
#pragma unroll
        for (int i = 0; i < V; ++i) o.v[i] = mul_rn(w, yv.v[i]);
        first = false;
      } else {
#pragma unroll
        for (int i = 0; i < V; ++i) o.v[i] = add_rn(o.v[i], mul_rn(w, yv.v[i]));
      }
    }
    if (first) {
#pragma unroll
      for (int i = 0; i < V; ++i) o.v[i] = T(0);
    }
    reinterpret_cast<W*>(out)[t * dv + c] = o;
  }
}

// Row checks alone (combine_rows with d == 0 has no column thread to do them).
__global__ void validate_rows(const int64_t* __restrict__ row, int64_t n, int64_t num_rows,
                              DeviceError* slot, const char* op) {
  MOEGRAD_GRID_STRIDE(i, n) {
    const int64_t r = row[i];
    if (!row_in_range(r, num_rows))
      report_error(slot, DeviceErrorKind::row_out_of_range, op, r, -1, num_rows);
  }
}

// row_dot: groups of G lanes (a power of two <= 32, so a group lies in one warp), one group per
// pair p = t * k + j. The block loop is uniform (every thread of a block makes the same number
// of passes), so the whole-warp shuffles see every lane.
template <class T, int V>
__global__ void row_dot_kernel(const T* __restrict__ a, const int64_t* __restrict__ row,
                               const T* __restrict__ b, T* __restrict__ out, int64_t pairs,
                               int64_t k, int64_t R, int64_t dv, int G, DeviceError* slot,
                               const char* op) {
  using W = Vec<T, V>;
  const int lane = static_cast<int>(threadIdx.x) % G;
  const int64_t per_block = blockDim.x / G;
  for (int64_t base = static_cast<int64_t>(blockIdx.x) * per_block; base < pairs;
       base += static_cast<int64_t>(gridDim.x) * per_block) {
    const int64_t p = base + threadIdx.x / G;
    T acc = T(0);
    if (p < pairs) {
      const int64_t r = row[p];
      if (!row_in_range(r, R)) {
        if (lane == 0) report_error(slot, DeviceErrorKind::row_out_of_range, op, r, -1, R);
      } else if (r >= 0) {
        const W* ar = reinterpret_cast<const W*>(a) + r * dv;
        const W* br = reinterpret_cast<const W*>(b) + (p / k) * dv;
        for (int64_t c = lane; c < dv; c += G) {
          const W av = ar[c], bv = br[c];
#pragma unroll
          for (int i = 0; i < V; ++i) acc = fma(av.v[i], bv.v[i], acc);
        }
      }
    }
    for (int off = G / 2; off > 0; off /= 2) acc += __shfl_xor_sync(0xffffffffu, acc, off, G);
    if (p < pairs && lane == 0) out[p] = acc;
  }
}

// Calls launch(std::integral_constant<int, V>) with V = 16 / sizeof(T) when d and every
// pointer allow 16-byte accesses, else V = 1.
template <class T, class Launch>
void with_vector_width(int64_t d, std::initializer_list<const void*> ptrs, Launch&& launch) {
  constexpr int V = 16 / static_cast<int>(sizeof(T));
  bool wide = d % V == 0;
  for (const void* p : ptrs) wide = wide && reinterpret_cast<std::uintptr_t>(p) % 16 == 0;
  if (wide)
    launch(std::integral_constant<int, V>{});
  else
    launch(std::integral_constant<int, 1>{});
}

void fill(int64_t* p, int64_t n, int64_t value, cudaStream_t st, const char* op) {
  if (n == 0) return;
  fill_i64<<<blocks_for(n), kThreads, 0, st>>>(p, n, value);
  MOEGRAD_CUDA_CHECK_LAUNCH(op);
}

__global__ void assign_slots_kernel(moe_math::SlotGroupArgs a, int64_t groups, int64_t* taken,
                                    DeviceError* slot, const char* op) {
  MOEGRAD_GRID_STRIDE(g, groups) {
    const int64_t bad = moe_math::assign_group_slots(a, g, taken + g * a.E);
    if (bad >= 0) report_error(slot, DeviceErrorKind::expert_out_of_range, op, a.expert[bad], 0, a.E);
  }
}

}  // namespace

void assign_slots(const Tensor& expert, const Tensor& active, int64_t groups, int64_t num_experts,
                  int64_t capacity, int64_t outer, const Tensor& position, const Tensor& padded_row,
                  const Tensor& routed, const Tensor& kept) {
  const char* op = "assign_slots";
  if (groups == 0) return;
  const int dev = expert.device().index;
  cudaStream_t st = stream(dev);
  const Tensor taken = core::empty({groups, num_experts}, {DType::i64, expert.device()});
  const moe_math::SlotGroupArgs a{expert.data<int64_t>(),
                                  active.defined() ? active.data<std::uint8_t>() : nullptr,
                                  expert.size(0) / groups,
                                  expert.size(1),
                                  num_experts,
                                  capacity,
                                  groups / outer,
                                  position.data<int64_t>(),
                                  padded_row.data<int64_t>(),
                                  routed.data<int64_t>(),
                                  kept.data<int64_t>()};
  constexpr int threads = 64;
  assign_slots_kernel<<<blocks_for(groups, threads), threads, 0, st>>>(a, groups, taken.data<int64_t>(),
                                                                       device_error_slot(dev), op);
  MOEGRAD_CUDA_CHECK_LAUNCH(op);
}

bool check_rows(const char* op, const Tensor& row, int64_t num_rows, bool require_distinct) {
  const int64_t n = row.numel();
  if (n == 0) return true;
  const int dev = row.device().index;
  cudaStream_t st = stream(dev);
  DeviceError* slot = device_error_slot(dev);
  // [bitset words..., repeated flag], zeroed.
  const int64_t words = (num_rows + 63) / 64;
  const Tensor scratch = core::empty({words + 1}, {DType::i64, row.device()});
  int64_t* sp = scratch.data<int64_t>();
  fill(sp, words + 1, 0, st, op);
  mark_rows<<<blocks_for(n), kThreads, 0, st>>>(row.data<int64_t>(), n, num_rows,
                                                reinterpret_cast<unsigned long long*>(sp),
                                                sp + words, require_distinct, slot, op);
  MOEGRAD_CUDA_CHECK_LAUNCH(op);
  int64_t repeated = 0;
  copy_bytes(&repeated, sp + words, sizeof repeated, dev);  // synchronises, raises row errors
  return repeated == 0;
}

void dispatch_rows(const Tensor& x, const Tensor& row, const Tensor& scale, const Tensor& out) {
  const char* op = "dispatch_rows";
  const int64_t n = x.size(0), d = x.size(1), k = row.size(1), R = out.size(0);
  const int dev = out.device().index;
  cudaStream_t st = stream(dev);
  DeviceError* slot = device_error_slot(dev);
  const Tensor inv = core::empty({R}, {DType::i64, out.device()});
  int64_t* ip = inv.data<int64_t>();
  fill(ip, R, -1, st, op);
  if (n * k > 0) {  // the row checks run even when there is nothing to copy
    claim_rows<<<blocks_for(n * k), kThreads, 0, st>>>(row.data<int64_t>(), n * k, R, ip, slot, op);
    MOEGRAD_CUDA_CHECK_LAUNCH(op);
  }
  if (R == 0 || d == 0) return;
  visit_floating(x.dtype(), op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* xp = x.data<T>();
    T* o = out.data<T>();
    with_vector_width<T>(d, {xp, o}, [&](auto width) {
      constexpr int V = decltype(width)::value;
      const RowGrid g = row_grid(R, d / V);
      gather_rows<T, V><<<g.grid, g.block, 0, st>>>(xp, scale.data<T>(), ip, o, R, k, d / V);
      MOEGRAD_CUDA_CHECK_LAUNCH(op);
    });
  });
}

void combine_rows(const Tensor& y, const Tensor& row, const Tensor& weight, const Tensor& out) {
  const char* op = "combine_rows";
  const int64_t n = out.size(0), d = out.size(1), k = row.size(1), R = y.size(0);
  if (n == 0) return;
  const int dev = out.device().index;
  cudaStream_t st = stream(dev);
  DeviceError* slot = device_error_slot(dev);
  if (d == 0) {
    if (k > 0) {
      validate_rows<<<blocks_for(n * k), kThreads, 0, st>>>(row.data<int64_t>(), n * k, R, slot, op);
      MOEGRAD_CUDA_CHECK_LAUNCH(op);
    }
    return;
  }
  visit_floating(y.dtype(), op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* yp = y.data<T>();
    T* o = out.data<T>();
    with_vector_width<T>(d, {yp, o}, [&](auto width) {
      constexpr int V = decltype(width)::value;
      const RowGrid g = row_grid(n, d / V);
      combine_kernel<T, V><<<g.grid, g.block, 0, st>>>(yp, row.data<int64_t>(), weight.data<T>(),
                                                       o, n, k, R, d / V, slot, op);
      MOEGRAD_CUDA_CHECK_LAUNCH(op);
    });
  });
}

void row_dot(const Tensor& a, const Tensor& row, const Tensor& b, const Tensor& out) {
  const char* op = "row_dot";
  const int64_t n = b.size(0), d = b.size(1), k = row.size(1), R = a.size(0);
  const int64_t pairs = n * k;
  if (pairs == 0) return;
  const int dev = out.device().index;
  cudaStream_t st = stream(dev);
  DeviceError* slot = device_error_slot(dev);
  visit_floating(a.dtype(), op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* ap = a.data<T>();
    const T* bp = b.data<T>();
    with_vector_width<T>(d, {ap, bp}, [&](auto width) {
      constexpr int V = decltype(width)::value;
      const int64_t dv = d / V;
      int G = 1;  // lanes per pair: enough for the vector columns, at most a warp
      while (G < dv && G < 32) G *= 2;
      const int64_t per_block = kThreads / G;
      const unsigned blocks =
          static_cast<unsigned>(std::clamp<int64_t>((pairs + per_block - 1) / per_block, 1, 65535 * 8));
      row_dot_kernel<T, V><<<blocks, kThreads, 0, st>>>(ap, row.data<int64_t>(), bp, out.data<T>(),
                                                        pairs, k, R, dv, G, slot, op);
      MOEGRAD_CUDA_CHECK_LAUNCH(op);
    });
  });
}

}  // namespace moegrad::core::cuda

namespace moegrad::core {

const MoeKernels MoeKernels::cuda = {
    .check_rows = cuda::check_rows,
    .dispatch_rows = cuda::dispatch_rows,
    .combine_rows = cuda::combine_rows,
    .row_dot = cuda::row_dot,
    .assign_slots = cuda::assign_slots,
};

}  // namespace moegrad::core
