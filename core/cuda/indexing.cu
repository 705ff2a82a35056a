// CUDA kernels for indexing (IndexingKernels::cuda, core/kernels/indexing.h): topk, one_hot, gather/scatter,
// index_select/index_add. Results equal the CPU kernels' (core/cpu/indexing.cpp):
//  - topk: the best k by (value, then lowest index), NaN largest, sorted. k <= 16: a warp per
//    row, each lane keeping its best k in order (the CPU's insertion list), then k rounds of
//    picking the best head of the 32 lists. Larger k: a stable segmented radix sort (CUB) of the
//    rows on order-preserving keys, of which the first k are kept.
//  - gather, index_select, one_hot: a thread per output (or index) element.
//  - scatter, scatter_add, index_add: every destination is owned by one thread that applies its
//    contributions in index order (no atomics), so repeated indices give the CPU's result bit
//    for bit (scatter: the last in index order wins; the adds: sequential sums in the dtype).
//    Short index lines (n <= kLineMax): a thread per line of the slice, walking j = 0..n-1 (lines
//    never share a destination). Longer ones: (line, index value, j) sorted with a stable radix
//    sort, then a thread per (run of equal destinations, slice position) walks its run in order.
// Index values are checked on the device: a bad one is recorded for the host (device_error.h)
// and its entry skipped.
#include "core/kernels/indexing.h"

#include <cub/device/device_radix_sort.cuh>
#include <cub/device/device_segmented_sort.cuh>

#include <array>
#include <bit>
#include <cstdint>
#include <limits>
#include <type_traits>

#include "core/cuda/launch.cuh"
#include "core/cuda/warp.cuh"
#include "core/cuda/loops.h"
#include "core/kernels/scalar_math.h"  // math::Cast
#include "core/kernels/reduce_math.h"
#include "core/kernels/strided_layout.h"

namespace moegrad::core::cuda {
namespace {

using std::int64_t;
using std::uint32_t;
using std::uint64_t;

constexpr int64_t kTopkWarpMax = 16;  // k up to this: the warp kernel
constexpr int64_t kLineMax = 32;      // scatter lines up to this long: a thread per line

Shape with_size(Shape s, int64_t dim, int64_t size) {
  s[dim] = size;
  return s;
}

template <std::size_t N>
CoalescedLayout<N> layout_of(const Shape& shape, const std::array<Shape, N>& strides) {
  std::array<const Shape*, N> sp;
  for (std::size_t k = 0; k < N; ++k) sp[k] = &strides[k];
  return coalesce<N>(shape, sp);
}

// Offsets in each operand of element i (row-major) of the layout's shape.
template <std::size_t N>
__device__ inline void offsets_of(const CoalescedLayout<N>& L, int64_t i, int64_t (&off)[N]) {
  for (std::size_t k = 0; k < N; ++k) off[k] = 0;
  for (int d = L.ndim - 1; d >= 0; --d) {
    const int64_t idx = i % L.sizes[d];
    i /= L.sizes[d];
    for (std::size_t k = 0; k < N; ++k) off[k] += idx * L.strides[k][d];
  }
}

// A device scratch buffer of n values of T (freed with the handle: kernels already queued on
// the device's stream finish before the memory is handed out again).
template <class T> struct Scratch {
  Tensor bytes;
  T* ptr = nullptr;
  Scratch(int64_t n, Device dev)
      : bytes(empty({std::max<int64_t>(n, 1) * static_cast<int64_t>(sizeof(T))}, {DType::u8, dev})),
        ptr(static_cast<T*>(bytes.raw_data())) {}
};

// ---- topk ----

// (a, ia) ranks before (b, ib): better value, or tied values and the lower index.
template <class T>
__device__ inline bool ranks_before(T a, int64_t ia, T b, int64_t ib, bool largest) {
  return math::topk_better(a, b, largest) || (!math::topk_better(b, a, largest) && ia < ib);
}

// A warp per row (row r's offsets in x, values, indices from L); k <= kTopkWarpMax.
template <class T>
__global__ void topk_warp_kernel(CoalescedLayout<3> L, int64_t rows, int64_t n, int64_t k,
                                 bool largest, const T* __restrict__ x, int64_t sx,
                                 T* __restrict__ values, int64_t sv, int64_t* __restrict__ indices,
                                 int64_t si) {
  using Team = LineTeam<false>;
  const int lane = static_cast<int>(Team::lane());
  for (int64_t row = Team::first(); row < rows; row += Team::stride()) {
    int64_t off[3];
    offsets_of(L, row, off);
    const T* xr = x + off[0];
    // This lane's best k of j = lane, lane + 32, ... in rank order. A later equal value never
    // displaces an earlier one, so ties keep the lowest index first (as on the CPU).
    T bv[kTopkWarpMax];
    int64_t bi[kTopkWarpMax];
    int64_t cnt = 0;
    for (int64_t j = lane; j < n; j += kWarp) {
      const T v = xr[j * sx];
      int64_t pos;
      if (cnt < k) {
        pos = cnt++;
      } else if (math::topk_better(v, bv[k - 1], largest)) {
        pos = k - 1;
      } else {
        continue;
      }
      while (pos > 0 && math::topk_better(v, bv[pos - 1], largest)) {
        bv[pos] = bv[pos - 1];
        bi[pos] = bi[pos - 1];
        --pos;
      }
      bv[pos] = v;
      bi[pos] = j;
    }
    // Merge: round t takes the best of the 32 list heads; its lane moves to its next entry.
    int64_t head = 0;
    for (int64_t t = 0; t < k; ++t) {
      T cv = head < cnt ? bv[head] : T(0);
      int64_t ci = head < cnt ? bi[head] : -1;  // -1: this lane has nothing left
      for (int d = kWarp / 2; d > 0; d /= 2) {
        const T ov = shfl_down(cv, d);
        const int64_t oi = shfl_down(ci, d);
        if (oi >= 0 && (ci < 0 || ranks_before(ov, oi, cv, ci, largest))) {
          cv = ov;
          ci = oi;
        }
      }
      cv = shfl_idx(cv, 0);
      ci = shfl_idx(ci, 0);
      if (lane == 0) {
        values[off[1] + t * sv] = cv;
        indices[off[2] + t * si] = ci;
      }
      if (head < cnt && bi[head] == ci) ++head;
    }
  }
}

// Sort keys: ascending key order = rank order (NaN largest, -0 == +0, ties by the stable sort).
template <class T> using KeyOf = std::conditional_t<sizeof(T) == 8, uint64_t, uint32_t>;

template <class T> __device__ inline KeyOf<T> ascending_key(T v) {
  if constexpr (std::is_same_v<T, float>) {
    if (v != v) return 0xffffffffu;
    const uint32_t u = __float_as_uint(v == 0.0f ? 0.0f : v);
    return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
  } else if constexpr (std::is_same_v<T, double>) {
    if (v != v) return ~uint64_t{0};
    const uint64_t u = static_cast<uint64_t>(__double_as_longlong(v == 0.0 ? 0.0 : v));
    return (u >> 63) ? ~u : (u | (uint64_t{1} << 63));
  } else if constexpr (std::is_same_v<T, int64_t>) {
    return static_cast<uint64_t>(v) ^ (uint64_t{1} << 63);
  } else {  // bool, uint8
    return static_cast<uint32_t>(v);
  }
}

// keys[i] = rank key of xr[i] (best first), pos[i] = i % n; offs[r] = r * n for r <= rows.
template <class T>
__global__ void topk_keys_kernel(const T* __restrict__ xr, int64_t total, int64_t n, int64_t rows,
                                 bool largest, KeyOf<T>* __restrict__ keys,
                                 int64_t* __restrict__ pos, int64_t* __restrict__ offs) {
  MOEGRAD_GRID_STRIDE(i, total) {
    const KeyOf<T> key = ascending_key(xr[i]);
    keys[i] = largest ? static_cast<KeyOf<T>>(~key) : key;
    pos[i] = i % n;
  }
  MOEGRAD_GRID_STRIDE(r, rows + 1) offs[r] = r * n;
}

// The first k of each sorted row to values/indices (row r's offsets from L).
template <class T>
__global__ void topk_take_kernel(CoalescedLayout<2> L, int64_t rows, int64_t n, int64_t k,
                                 const T* __restrict__ xr, const int64_t* __restrict__ sorted,
                                 T* __restrict__ values, int64_t sv, int64_t* __restrict__ indices,
                                 int64_t si) {
  MOEGRAD_GRID_STRIDE(e, rows * k) {
    const int64_t row = e / k, t = e - row * k;
    int64_t off[2];
    offsets_of(L, row, off);
    const int64_t j = sorted[row * n + t];
    values[off[0] + t * sv] = xr[row * n + j];
    indices[off[1] + t * si] = j;
  }
}

// x with dim last, contiguous: rows of x.size(dim) in the row-major order of the other dims
// (x itself when that view is already contiguous).
template <class T> Tensor dim_last(const Tensor& x, int64_t dim) {
  Shape shape, strides;
  for (int64_t d = 0; d < x.dim(); ++d)
    if (d != dim) {
      shape.push_back(x.shape()[d]);
      strides.push_back(x.strides()[d]);
    }
  shape.push_back(x.shape()[dim]);
  strides.push_back(x.strides()[dim]);
  const Tensor view(x.storage(), shape, strides, x.offset(), x.dtype());
  if (view.is_contiguous()) return view;
  Tensor out = empty_for("topk", shape, {x.dtype(), x.device()});
  map<T, T>(out, {view}, math::Cast<T>{});
  return out;
}

template <class T>
void topk_sorted(const Tensor& x, int64_t k, int64_t dim, bool largest, const Tensor& values,
                 const Tensor& indices) {
  using Key = KeyOf<T>;
  const Device dev = x.device();
  cudaStream_t st = stream(dev.index);
  const int64_t n = x.size(dim);
  const Tensor xr = dim_last<T>(x, dim);
  const int64_t total = xr.numel(), rows = total / n;
  Scratch<Key> keys(total, dev), keys_out(total, dev);
  Scratch<int64_t> pos(total, dev), pos_out(total, dev), offs(rows + 1, dev);
  topk_keys_kernel<T><<<blocks_for(total), kThreads, 0, st>>>(xr.data<T>(), total, n, rows, largest,
                                                              keys.ptr, pos.ptr, offs.ptr);
  MOEGRAD_CUDA_CHECK_LAUNCH("topk");
  std::size_t temp_bytes = 0;
  MOEGRAD_CUDA_CHECK(cub::DeviceSegmentedSort::StableSortPairs(
      nullptr, temp_bytes, keys.ptr, keys_out.ptr, pos.ptr, pos_out.ptr, total, rows, offs.ptr,
      offs.ptr + 1, st));
  Scratch<unsigned char> temp(static_cast<int64_t>(temp_bytes), dev);
  MOEGRAD_CUDA_CHECK(cub::DeviceSegmentedSort::StableSortPairs(
      temp.ptr, temp_bytes, keys.ptr, keys_out.ptr, pos.ptr, pos_out.ptr, total, rows, offs.ptr,
      offs.ptr + 1, st));
  const auto L = layout_of<2>(with_size(x.shape(), dim, 1), {values.strides(), indices.strides()});
  topk_take_kernel<T><<<blocks_for(rows * k), kThreads, 0, st>>>(
      L, rows, n, k, xr.data<T>(), pos_out.ptr, values.data<T>(), values.stride(dim),
      indices.data<int64_t>(), indices.stride(dim));
  MOEGRAD_CUDA_CHECK_LAUNCH("topk");
}

// ---- gather / index_select / one_hot ----

// out[e] = x[xoff(e) + index[e] * sxd] over out's shape; x's strides are 0 along dim (and
// index_select's index has stride 0 off dim).
template <class T>
__global__ void gather_kernel(CoalescedLayout<3> L, int64_t n, T* __restrict__ out,
                              const T* __restrict__ x, const int64_t* __restrict__ index,
                              int64_t sxd, int64_t dim, int64_t size, const char* op,
                              DeviceError* err) {
  MOEGRAD_GRID_STRIDE(e, n) {
    int64_t off[3];
    offsets_of(L, e, off);
    const int64_t v = index[off[2]];
    if (v < 0 || v >= size) {
      report_error(err, DeviceErrorKind::index_out_of_range, op, v, dim, size);
      continue;
    }
    out[off[0]] = x[off[1] + v * sxd];
  }
}

void gather_launch(const char* op, const Tensor& out, const Tensor& x, int64_t dim,
                   const Tensor& index, const Shape& idx_strides) {
  const int64_t n = out.numel();
  const Device dev = x.device();
  cudaStream_t st = stream(dev.index);
  DeviceError* err = device_error_slot(dev.index);
  const auto L =
      layout_of<3>(out.shape(), {out.strides(), with_size(x.strides(), dim, 0), idx_strides});
  visit_dtype(x.dtype(), op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    gather_kernel<T><<<blocks_for(n), kThreads, 0, st>>>(L, n, out.data<T>(), x.data<T>(),
                                                         index.data<int64_t>(), x.stride(dim), dim,
                                                         x.size(dim), op, err);
  });
  MOEGRAD_CUDA_CHECK_LAUNCH(op);
}

template <class T>
__global__ void one_hot_kernel(CoalescedLayout<2> L, int64_t n, const int64_t* __restrict__ index,
                               T* __restrict__ out, int64_t sc, int64_t classes, const char* op,
                               DeviceError* err) {
  MOEGRAD_GRID_STRIDE(e, n) {
    int64_t off[2];
    offsets_of(L, e, off);
    const int64_t v = index[off[0]];
    if (v < 0 || v >= classes) {
      report_error(err, DeviceErrorKind::class_out_of_range, op, v, 0, classes);
      continue;
    }
    out[off[1] + v * sc] = T(1);
  }
}

// ---- scatter / scatter_add / index_add ----

// The slice: positions p of the index (scatter) or of out (index_add) with dim dropped; line p
// has n entries j. Entry (p, j) targets out[oo(p) + index(p, j) * sod] with src[so(p) + j * ssd],
// index(p, j) = index[io(p) + j * sid]; L gives oo, so, io.
struct ScatterArgs {
  CoalescedLayout<3> L;
  int64_t P;     // slice positions
  int64_t n;     // entries per line
  int64_t size;  // out.size(dim)
  int64_t dim;
  int64_t sod, ssd, sid;
  const char* op;
  DeviceError* err;
};

// A thread per slice position, walking its line in index order.
template <class T, bool Accumulate>
__global__ void scatter_lines_kernel(ScatterArgs a, T* out, const T* __restrict__ src,
                                     const int64_t* __restrict__ index) {
  MOEGRAD_GRID_STRIDE(p, a.P) {
    int64_t off[3];
    offsets_of(a.L, p, off);
    for (int64_t j = 0; j < a.n; ++j) {
      const int64_t v = index[off[2] + j * a.sid];
      if (v < 0 || v >= a.size) {
        report_error(a.err, DeviceErrorKind::index_out_of_range, a.op, v, a.dim, a.size);
        continue;
      }
      T& dst = out[off[0] + v * a.sod];
      const T s = src[off[1] + j * a.ssd];
      if constexpr (Accumulate) dst = static_cast<T>(dst + s);
      else dst = s;
    }
  }
}

// Sort keys of the entries of `lines` index lines (line l = slice position l, or the one shared
// line): key = l * (size + 1) + index value (size for a bad value), pos = j.
__global__ void scatter_keys_kernel(ScatterArgs a, int64_t lines, const int64_t* __restrict__ index,
                                    uint64_t* __restrict__ keys, int64_t* __restrict__ pos) {
  MOEGRAD_GRID_STRIDE(e, lines * a.n) {
    const int64_t l = e / a.n, j = e - l * a.n;
    int64_t off[3];
    offsets_of(a.L, l, off);
    int64_t v = index[off[2] + j * a.sid];
    if (v < 0 || v >= a.size) {
      report_error(a.err, DeviceErrorKind::index_out_of_range, a.op, v, a.dim, a.size);
      v = a.size;
    }
    keys[e] = static_cast<uint64_t>(l) * static_cast<uint64_t>(a.size + 1) +
              static_cast<uint64_t>(v);
    pos[e] = j;
  }
}

// Thread (e, c), c < C (the slice positions sharing a line: C = P for a shared index, else 1):
// when sorted entry e starts a run of equal keys, it applies the run, in j order, to the
// destination of slice position l * C + c.
template <class T, bool Accumulate>
__global__ void scatter_runs_kernel(ScatterArgs a, int64_t entries, int64_t C,
                                    const uint64_t* __restrict__ keys,
                                    const int64_t* __restrict__ pos, T* out,
                                    const T* __restrict__ src) {
  MOEGRAD_GRID_STRIDE(t, entries * C) {
    const int64_t e = t / C, c = t - e * C;
    const uint64_t key = keys[e];
    if (e > 0 && keys[e - 1] == key) continue;  // not the start of a run
    const uint64_t base = static_cast<uint64_t>(a.size + 1);
    const int64_t l = static_cast<int64_t>(key / base), v = static_cast<int64_t>(key % base);
    if (v == a.size) continue;  // bad index values (already reported)
    int64_t off[3];
    offsets_of(a.L, l * C + c, off);
    T& dst = out[off[0] + v * a.sod];
    const T* s = src + off[1];
    if constexpr (Accumulate) {
      T acc = dst;
      for (int64_t f = e; f < entries && keys[f] == key; ++f)
        acc = static_cast<T>(acc + s[pos[f] * a.ssd]);
      dst = acc;
    } else {
      int64_t f = e;
      while (f + 1 < entries && keys[f + 1] == key) ++f;
      dst = s[pos[f] * a.ssd];  // the last in index order wins
    }
  }
}

// slice: the slice's shape (dim of size 1); strides of out, src and index over the full dims
// (their entries at dim are ignored); n entries per line with index stride sid along dim.
template <bool Accumulate>
void scatter_common(const char* op, const Tensor& out, int64_t dim, const Tensor& index,
                    const Tensor& src, const Shape& slice, const Shape& idx_strides, int64_t n,
                    int64_t sid) {
  const Device dev = out.device();
  cudaStream_t st = stream(dev.index);
  ScatterArgs a;
  a.L = layout_of<3>(slice, {with_size(out.strides(), dim, 0), with_size(src.strides(), dim, 0),
                             with_size(idx_strides, dim, 0)});
  a.P = shape_numel(slice);
  a.n = n;
  a.size = out.size(dim);
  a.dim = dim;
  a.sod = out.stride(dim);
  a.ssd = src.stride(dim);
  a.sid = sid;
  a.op = op;
  a.err = device_error_slot(dev.index);
  if (a.P == 0 || n == 0) return;
  const int64_t* ip = index.data<int64_t>();
  if (n <= kLineMax) {
    visit_dtype(out.dtype(), op, [&](auto tag) {
      using T = typename decltype(tag)::type;
      scatter_lines_kernel<T, Accumulate><<<blocks_for(a.P), kThreads, 0, st>>>(
          a, out.data<T>(), src.data<T>(), ip);
    });
    MOEGRAD_CUDA_CHECK_LAUNCH(op);
    return;
  }
  // One index line for every slice position when the index does not move across the slice.
  bool shared = true;
  for (int d = 0; d < a.L.ndim && shared; ++d) shared = a.L.sizes[d] == 1 || a.L.strides[2][d] == 0;
  const int64_t lines = shared ? 1 : a.P, C = shared ? a.P : 1;
  const int64_t entries = lines * n;
  const uint64_t base = static_cast<uint64_t>(a.size) + 1;
  MOEGRAD_CHECK(static_cast<uint64_t>(lines) <= std::numeric_limits<uint64_t>::max() / base, op,
                "too many index lines for the CUDA kernel ({} lines, size {})", lines, a.size);
  const uint64_t max_key = static_cast<uint64_t>(lines) * base - 1;
  const int end_bit = std::max(1, static_cast<int>(std::bit_width(max_key)));
  Scratch<uint64_t> keys(entries, dev), keys_out(entries, dev);
  Scratch<int64_t> pos(entries, dev), pos_out(entries, dev);
  scatter_keys_kernel<<<blocks_for(entries), kThreads, 0, st>>>(a, lines, ip, keys.ptr, pos.ptr);
  MOEGRAD_CUDA_CHECK_LAUNCH(op);
  std::size_t temp_bytes = 0;
  MOEGRAD_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(nullptr, temp_bytes, keys.ptr, keys_out.ptr,
                                                     pos.ptr, pos_out.ptr, entries, 0, end_bit,
                                                     st));
  Scratch<unsigned char> temp(static_cast<int64_t>(temp_bytes), dev);
  MOEGRAD_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(temp.ptr, temp_bytes, keys.ptr, keys_out.ptr,
                                                     pos.ptr, pos_out.ptr, entries, 0, end_bit,
                                                     st));
  visit_dtype(out.dtype(), op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    scatter_runs_kernel<T, Accumulate><<<blocks_for(entries * C), kThreads, 0, st>>>(
        a, entries, C, keys_out.ptr, pos_out.ptr, out.data<T>(), src.data<T>());
  });
  MOEGRAD_CUDA_CHECK_LAUNCH(op);
}

template <bool Accumulate>
void scatter_impl(const char* op, const Tensor& out, std::int64_t dim, const Tensor& index,
                  const Tensor& src) {
  if (index.numel() == 0) return;
  scatter_common<Accumulate>(op, out, dim, index, src, with_size(index.shape(), dim, 1),
                             index.strides(), index.size(dim), index.stride(dim));
}

}  // namespace

void topk(const Tensor& x, std::int64_t k, std::int64_t dim, bool largest, const Tensor& values,
          const Tensor& indices) {
  const int64_t n = x.size(dim);
  if (k == 0 || values.numel() == 0) return;
  visit_dtype(x.dtype(), "topk", [&](auto tag) {
    using T = typename decltype(tag)::type;
    if (k > kTopkWarpMax) {
      topk_sorted<T>(x, k, dim, largest, values, indices);
      return;
    }
    const Shape rows_shape = with_size(x.shape(), dim, 1);
    const int64_t rows = shape_numel(rows_shape);
    const auto L = layout_of<3>(rows_shape, {x.strides(), values.strides(), indices.strides()});
    topk_warp_kernel<T><<<blocks_for(rows * kWarp), kThreads, 0, stream(x.device().index)>>>(
        L, rows, n, k, largest, x.data<T>(), x.stride(dim), values.data<T>(), values.stride(dim),
        indices.data<int64_t>(), indices.stride(dim));
    MOEGRAD_CUDA_CHECK_LAUNCH("topk");
  });
}

void one_hot(const Tensor& indices, const Tensor& out) {
  const int64_t classes = out.size(-1);
  const int64_t n = indices.numel();
  if (n == 0) return;
  const Device dev = indices.device();
  const Shape out_strides(out.strides().begin(), out.strides().end() - 1);
  const auto L = layout_of<2>(indices.shape(), {indices.strides(), out_strides});
  DeviceError* err = device_error_slot(dev.index);
  cudaStream_t st = stream(dev.index);
  visit_dtype(out.dtype(), "one_hot", [&](auto tag) {
    using T = typename decltype(tag)::type;
    one_hot_kernel<T><<<blocks_for(n), kThreads, 0, st>>>(L, n, indices.data<int64_t>(),
                                                          out.data<T>(), out.stride(-1), classes,
                                                          "one_hot", err);
  });
  MOEGRAD_CUDA_CHECK_LAUNCH("one_hot");
}

void gather(const Tensor& x, std::int64_t dim, const Tensor& index, const Tensor& out) {
  if (out.numel() == 0) return;
  gather_launch("gather", out, x, dim, index, index.strides());
}

void index_select(const Tensor& x, std::int64_t dim, const Tensor& index, const Tensor& out) {
  if (out.numel() == 0) return;
  // index seen with out's shape: stride 0 everywhere except along dim.
  Shape idx_strides(out.shape().size(), 0);
  idx_strides[dim] = index.dim() == 1 ? index.stride(0) : 0;
  gather_launch("index_select", out, x, dim, index, idx_strides);
}

void scatter(const Tensor& out, std::int64_t dim, const Tensor& index, const Tensor& src) {
  scatter_impl<false>("scatter", out, dim, index, src);
}

void scatter_add(const Tensor& out, std::int64_t dim, const Tensor& index, const Tensor& src) {
  scatter_impl<true>("scatter_add", out, dim, index, src);
}

void index_add(const Tensor& out, std::int64_t dim, const Tensor& index, const Tensor& src) {
  const int64_t n = index.numel();
  if (n == 0 || out.numel() == 0) return;
  // index_add is scatter_add with the 1-D index broadcast over the slice (stride 0 off dim).
  const Shape idx_strides(out.shape().size(), 0);
  scatter_common<true>("index_add", out, dim, index, src, with_size(out.shape(), dim, 1),
                       idx_strides, n, index.dim() == 1 ? index.stride(0) : 0);
}

}  // namespace moegrad::core::cuda

namespace moegrad::core {

const IndexingKernels IndexingKernels::cuda = {
    .topk = cuda::topk,
    .one_hot = cuda::one_hot,
    .gather = cuda::gather,
    .scatter = cuda::scatter,
    .scatter_add = cuda::scatter_add,
    .index_select = cuda::index_select,
    .index_add = cuda::index_add,
};

}  // namespace moegrad::core
