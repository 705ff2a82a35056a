// CPU kernels for indexing (IndexingKernels::cpu, core/kernels/indexing.h): topk, one_hot, gather/scatter, index_select/index_add.
#include "core/kernels/indexing.h"

#include <algorithm>
#include <array>
#include <atomic>
#include <cmath>
#include <optional>
#include <type_traits>
#include <vector>

#include "core/checked_math.h"
#include "core/cpu/loops.h"
#include "core/kernels/reduce_math.h"

namespace moegrad::core::cpu {
namespace {

// Walks every element of `shape` (row-major) in runs along the innermost coalesced dim: calls
// f(off, cnt, step) where off[k] is the run's first offset in operand k (strides[k]), cnt the
// run length and step[k] operand k's stride along the run. Above kParallelGrain work (numel *
// work_per_elem) the elements are split into contiguous ranges, one per OpenMP thread, so f
// must be safe to call concurrently for disjoint runs (and must not throw).
template <std::size_t N, class F>
void strided_for(const Shape& shape, const std::array<Shape, N>& strides,
                 std::int64_t work_per_elem, F&& f) {
  const std::int64_t n = shape_numel(shape);
  if (n == 0) return;
  std::array<const Shape*, N> sp;
  for (std::size_t k = 0; k < N; ++k) sp[k] = &strides[k];
  const auto L = coalesce<N>(shape, sp);
  const int last = L.ndim - 1;
  const std::int64_t inner = L.sizes[last];
  std::int64_t step[N];
  for (std::size_t k = 0; k < N; ++k) step[k] = L.strides[k][last];
  const int nthreads = threads_for(saturating_mul(n, std::max<std::int64_t>(work_per_elem, 1)));

#pragma omp parallel num_threads(nthreads) if (nthreads > 1)
  {
    const int t = omp_get_thread_num(), T = omp_get_num_threads();
    const std::int64_t e0 = n * t / T, e1 = n * (t + 1) / T;
    std::int64_t idx[16] = {0};
    std::int64_t off[N] = {0};
    std::int64_t rem = e0;
    for (int d = last; d >= 0; --d) {
      idx[d] = rem % L.sizes[d];
      rem /= L.sizes[d];
      for (std::size_t k = 0; k < N; ++k) off[k] += idx[d] * L.strides[k][d];
    }
    std::int64_t e = e0;
    while (e < e1) {
      const std::int64_t j0 = idx[last];
      const std::int64_t cnt = std::min(inner - j0, e1 - e);
      f(static_cast<const std::int64_t*>(off), cnt, static_cast<const std::int64_t*>(step));
      e += cnt;
      if (e >= e1) break;
      // Back to the start of this row, then advance the outer multi-index by one row.
      for (std::size_t k = 0; k < N; ++k) off[k] -= j0 * step[k];
      idx[last] = 0;
      for (int d = last - 1; d >= 0; --d) {
        for (std::size_t k = 0; k < N; ++k) off[k] += L.strides[k][d];
        if (++idx[d] < L.sizes[d]) break;
        for (std::size_t k = 0; k < N; ++k) off[k] -= L.strides[k][d] * L.sizes[d];
        idx[d] = 0;
      }
    }
  }
}

// The first value of `index` (row-major) outside [0, size), if any. The scan is parallel; only
// when something is out of range is it repeated serially to name the first offender.
std::optional<std::int64_t> first_out_of_range(const Tensor& index, std::int64_t size) {
  const std::int64_t* p = index.data<std::int64_t>();
  std::atomic<bool> bad{false};
  strided_for<1>(index.shape(), {index.strides()}, 1,
                 [&](const std::int64_t* off, std::int64_t cnt, const std::int64_t* step) {
                   const std::int64_t* q = p + off[0];
                   const std::int64_t s = step[0];
                   bool b = false;
                   for (std::int64_t c = 0; c < cnt; ++c) {
                     const std::int64_t v = q[c * s];
                     b |= (v < 0) | (v >= size);
                   }
                   if (b) bad.store(true, std::memory_order_relaxed);
                 });
  if (!bad.load()) return std::nullopt;
  // Serial row-major pass to name the first offender.
  const Shape& shape = index.shape();
  const Shape& strides = index.strides();
  std::vector<std::int64_t> idx(shape.size(), 0);
  for (std::int64_t pos = 0, n = index.numel(); pos < n; ++pos) {
    std::int64_t off = 0;
    for (std::size_t d = 0; d < shape.size(); ++d) off += idx[d] * strides[d];
    const std::int64_t v = p[off];
    if (v < 0 || v >= size) return v;
    for (std::int64_t d = static_cast<std::int64_t>(shape.size()) - 1; d >= 0; --d) {
      if (++idx[d] < shape[d]) break;
      idx[d] = 0;
    }
  }
  return std::nullopt;
}

void check_index_range(const char* op, const Tensor& index, std::int64_t dim, std::int64_t size) {
  if (auto bad = first_out_of_range(index, size))
    fail(op, "index {} out of range for dim {} of size {}", *bad, dim, size);
}

Shape with_size(Shape s, std::int64_t dim, std::int64_t size) {
  s[dim] = size;
  return s;
}

template <class T>
struct TopkOrder {  // a ranks before b; NaN counts as larger than every number (as in PyTorch)
  bool largest;
  bool operator()(T a, T b) const { return math::topk_better(a, b, largest); }
};

constexpr std::int64_t kTopkInsertionMax = 16;

// One row of topk: the best k of row[0], row[sx], ... (n values), written sorted to
// values[j * sv] and indices[j * si].
template <class T>
void topk_row(const T* row, std::int64_t n, std::int64_t sx, std::int64_t k, TopkOrder<T> better,
              T* values, std::int64_t sv, std::int64_t* indices, std::int64_t si) {
  if (k <= kTopkInsertionMax && k < n) {
    // A sorted list of the best k so far; a later equal value never displaces an earlier one,
    // so ties keep the lowest index first.
    T bv[kTopkInsertionMax];
    std::int64_t bi[kTopkInsertionMax];
    std::int64_t cnt = 0;
    for (std::int64_t j = 0; j < n; ++j) {
      const T v = row[j * sx];
      std::int64_t pos;
      if (cnt < k) {
        pos = cnt++;
      } else if (better(v, bv[k - 1])) {
        pos = k - 1;
      } else {
        continue;
      }
      while (pos > 0 && better(v, bv[pos - 1])) {
        bv[pos] = bv[pos - 1];
        bi[pos] = bi[pos - 1];
        --pos;
      }
      bv[pos] = v;
      bi[pos] = j;
    }
    for (std::int64_t j = 0; j < k; ++j) {
      values[j * sv] = bv[j];
      indices[j * si] = bi[j];
    }
    return;
  }
  thread_local std::vector<std::int64_t> order;
  order.resize(static_cast<std::size_t>(n));
  for (std::int64_t j = 0; j < n; ++j) order[j] = j;
  // Total order: value rank, then lowest index.
  auto cmp = [&](std::int64_t a, std::int64_t b) {
    const T va = row[a * sx], vb = row[b * sx];
    if (better(va, vb)) return true;
    if (better(vb, va)) return false;
    return a < b;
  };
  if (k < n) std::nth_element(order.begin(), order.begin() + (k - 1), order.end(), cmp);
  std::sort(order.begin(), order.begin() + k, cmp);
  for (std::int64_t j = 0; j < k; ++j) {
    values[j * sv] = row[order[j] * sx];
    indices[j * si] = order[j];
  }
}

// out[e] = x[xoff(e) + index[e] * sxd] over out's shape, where x's strides have 0 along dim
// (shared by gather and index_select, whose index is seen with stride 0 off dim).
template <class T>
void gather_loop(const Tensor& out, const T* xp, const Shape& x_strides, std::int64_t sxd,
                 const std::int64_t* ip, const Shape& idx_strides) {
  T* op = out.data<T>();
  strided_for<3>(out.shape(), {out.strides(), x_strides, idx_strides}, 1,
                 [&](const std::int64_t* off, std::int64_t cnt, const std::int64_t* step) {
                   T* o = op + off[0];
                   const T* x = xp + off[1];
                   const std::int64_t* q = ip + off[2];
                   const std::int64_t so = step[0], sx = step[1], sq = step[2];
                   if (sq == 0) {  // one index for the whole run: a strided row copy
                     const T* xr = x + q[0] * sxd;
                     if (so == 1 && sx == 1) {
                       std::copy(xr, xr + cnt, o);
                     } else {
                       for (std::int64_t c = 0; c < cnt; ++c) o[c * so] = xr[c * sx];
                     }
                   } else {
                     for (std::int64_t c = 0; c < cnt; ++c)
                       o[c * so] = x[c * sx + q[c * sq] * sxd];
                   }
                 });
}

}  // namespace

void topk(const Tensor& x, std::int64_t k, std::int64_t dim, bool largest, const Tensor& values,
          const Tensor& indices) {
  const std::int64_t n = x.size(dim);
  if (k == 0 || values.numel() == 0) return;
  const std::int64_t sx = x.stride(dim), sv = values.stride(dim), si = indices.stride(dim);
  const Shape rows = with_size(x.shape(), dim, 1);
  visit_dtype(x.dtype(), "topk", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* xp = x.data<T>();
    T* vp = values.data<T>();
    std::int64_t* ip = indices.data<std::int64_t>();
    const TopkOrder<T> better{largest};
    strided_for<3>(rows, {x.strides(), values.strides(), indices.strides()}, n,
                   [&](const std::int64_t* off, std::int64_t cnt, const std::int64_t* step) {
                     for (std::int64_t r = 0; r < cnt; ++r)
                       topk_row<T>(xp + off[0] + r * step[0], n, sx, k, better,
                                   vp + off[1] + r * step[1], sv, ip + off[2] + r * step[2], si);
                   });
  });
}

void one_hot(const Tensor& indices, const Tensor& out) {
  const std::int64_t classes = out.size(-1);
  if (indices.numel() == 0) return;
  if (auto bad = first_out_of_range(indices, classes))
    fail("one_hot", "class index {} out of range for num_classes {}", *bad, classes);
  const std::int64_t sc = out.stride(-1);
  Shape out_strides(out.strides().begin(), out.strides().end() - 1);
  const std::int64_t* ip = indices.data<std::int64_t>();
  visit_dtype(out.dtype(), "one_hot", [&](auto tag) {
    using T = typename decltype(tag)::type;
    T* op = out.data<T>();
    strided_for<2>(indices.shape(), {indices.strides(), out_strides}, 1,
                   [&](const std::int64_t* off, std::int64_t cnt, const std::int64_t* step) {
                     for (std::int64_t c = 0; c < cnt; ++c)
                       op[off[1] + c * step[1] + ip[off[0] + c * step[0]] * sc] = T(1);
                   });
  });
}

void gather(const Tensor& x, std::int64_t dim, const Tensor& index, const Tensor& out) {
  if (out.numel() == 0) return;
  check_index_range("gather", index, dim, x.size(dim));
  visit_dtype(x.dtype(), "gather", [&](auto tag) {
    using T = typename decltype(tag)::type;
    gather_loop<T>(out, x.data<T>(), with_size(x.strides(), dim, 0), x.stride(dim),
                   index.data<std::int64_t>(), index.strides());
  });
}

void index_select(const Tensor& x, std::int64_t dim, const Tensor& index, const Tensor& out) {
  if (out.numel() == 0) return;
  check_index_range("index_select", index, dim, x.size(dim));
  // index seen with out's shape: stride 0 everywhere except along dim.
  Shape idx_strides(out.shape().size(), 0);
  idx_strides[dim] = index.dim() == 1 ? index.stride(0) : 0;
  visit_dtype(x.dtype(), "index_select", [&](auto tag) {
    using T = typename decltype(tag)::type;
    gather_loop<T>(out, x.data<T>(), with_size(x.strides(), dim, 0), x.stride(dim),
                   index.data<std::int64_t>(), idx_strides);
  });
}

namespace {

// Shared by scatter and scatter_add. The walk is over index's shape without dim (the "slice");
// for each run of slice positions, j along dim goes in order, so repeated targets are written
// (or accumulated) in index order. Different slice positions never share a target, so runs
// can go to different threads: deterministic without atomics.
template <bool Accumulate>
void scatter_impl(const char* opname, const Tensor& out, std::int64_t dim, const Tensor& index,
                  const Tensor& src) {
  if (index.numel() == 0) return;
  check_index_range(opname, index, dim, out.size(dim));
  const std::int64_t n = index.size(dim);
  const Shape slice = with_size(index.shape(), dim, 1);
  const std::int64_t sod = out.stride(dim), sid = index.stride(dim), ssd = src.stride(dim);
  const std::int64_t* ip = index.data<std::int64_t>();
  visit_dtype(out.dtype(), opname, [&](auto tag) {
    using T = typename decltype(tag)::type;
    T* op = out.data<T>();
    const T* sp = src.data<T>();
    strided_for<3>(slice, {with_size(out.strides(), dim, 0), index.strides(), src.strides()}, n,
                   [&](const std::int64_t* off, std::int64_t cnt, const std::int64_t* step) {
                     for (std::int64_t j = 0; j < n; ++j) {
                       T* o = op + off[0];
                       const std::int64_t* q = ip + off[1] + j * sid;
                       const T* s = sp + off[2] + j * ssd;
                       for (std::int64_t c = 0; c < cnt; ++c) {
                         T& dst = o[c * step[0] + q[c * step[1]] * sod];
                         if constexpr (Accumulate) {
                           dst = static_cast<T>(dst + s[c * step[2]]);
                         } else {
                           dst = s[c * step[2]];
                         }
                       }
                     }
                   });
  });
}

}  // namespace

void scatter(const Tensor& out, std::int64_t dim, const Tensor& index, const Tensor& src) {
  scatter_impl<false>("scatter", out, dim, index, src);
}

void scatter_add(const Tensor& out, std::int64_t dim, const Tensor& index, const Tensor& src) {
  scatter_impl<true>("scatter_add", out, dim, index, src);
}

void index_add(const Tensor& out, std::int64_t dim, const Tensor& index, const Tensor& src) {
  const std::int64_t n = index.numel();
  if (n == 0 || out.numel() == 0) return;
  check_index_range("index_add", index, dim, out.size(dim));
  const std::int64_t sid = index.dim() == 1 ? index.stride(0) : 0;
  const std::int64_t sod = out.stride(dim), ssd = src.stride(dim);
  const Shape slice = with_size(out.shape(), dim, 1);
  const std::int64_t* ip = index.data<std::int64_t>();
  visit_dtype(out.dtype(), "index_add", [&](auto tag) {
    using T = typename decltype(tag)::type;
    T* op = out.data<T>();
    const T* sp = src.data<T>();
    // As in scatter: each run of slice positions belongs to one thread, which goes through the
    // index in order, so repeated rows accumulate in index order.
    strided_for<2>(slice, {out.strides(), src.strides()}, n,
                   [&](const std::int64_t* off, std::int64_t cnt, const std::int64_t* step) {
                     const std::int64_t so = step[0], ss = step[1];
                     for (std::int64_t j = 0; j < n; ++j) {
                       T* o = op + off[0] + ip[j * sid] * sod;
                       const T* s = sp + off[1] + j * ssd;
                       if (so == 1 && ss == 1) {
                         for (std::int64_t c = 0; c < cnt; ++c) o[c] = static_cast<T>(o[c] + s[c]);
                       } else {
                         for (std::int64_t c = 0; c < cnt; ++c)
                           o[c * so] = static_cast<T>(o[c * so] + s[c * ss]);
                       }
                     }
                   });
  });
}

}  // namespace moegrad::core::cpu

namespace moegrad::core {

const IndexingKernels IndexingKernels::cpu = {
    .topk = cpu::topk,
    .one_hot = cpu::one_hot,
    .gather = cpu::gather,
    .scatter = cpu::scatter,
    .scatter_add = cpu::scatter_add,
    .index_select = cpu::index_select,
    .index_add = cpu::index_add,
};

}  // namespace moegrad::core
