// CPU kernels for the MoE row ops and the slot assignment. Row loops go over tokens t (OpenMP
// above kParallelGrain work); dispatch_rows writes distinct rows, so threads never share a
// target. Each output element is accumulated in a fixed order, so results do not depend on
// the thread count.
#include "core/kernels/moe.h"

#include <algorithm>
#include <cstdint>
#include <vector>

#include "core/checked_math.h"
#include "core/cpu/loops.h"
#include "core/kernels/moe_slots_math.h"

namespace moegrad::core::cpu {

namespace {

// check_rows' pass. With want_bitset, returns a bitset: bit r is set iff some (t, j) targets
// row r. Otherwise, when rows far outnumber the indices (rows_distinct(row, 2^62)), a sorted copy
// of the indices does the distinct test, so num_rows alone never sizes an allocation.
std::vector<std::uint64_t> scan_rows(const char* op, const Tensor& row, std::int64_t num_rows,
                                     bool require_distinct, bool& distinct, bool want_bitset = false) {
  const std::int64_t* p = row.data<std::int64_t>();
  const std::int64_t n = row.numel();
  distinct = true;
  auto check_range = [&](std::int64_t r) {
    if (r < -1 || r >= num_rows) fail(op, "row index {} out of range [-1, {})", r, num_rows);
  };
  if (!want_bitset && num_rows / 64 > n) {
    std::vector<std::int64_t> rows;
    rows.reserve(static_cast<std::size_t>(n));
    for (std::int64_t i = 0; i < n; ++i) {
      check_range(p[i]);
      if (p[i] >= 0) rows.push_back(p[i]);
    }
    std::sort(rows.begin(), rows.end());
    const auto twice = std::adjacent_find(rows.begin(), rows.end());
    if (twice != rows.end()) {
      if (require_distinct) fail(op, "row index {} appears twice", *twice);
      distinct = false;
    }
    return {};
  }
  // One bit per target row: a serial pass over T * k indices, cheap next to the T * k * d work.
  std::vector<std::uint64_t> seen(static_cast<std::size_t>(num_rows / 64 + 1), 0);
  for (std::int64_t i = 0; i < n; ++i) {
    const std::int64_t r = p[i];
    check_range(r);
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

void assign_slots(const Tensor& expert, const Tensor& active, std::int64_t groups, std::int64_t num_experts,
                  std::int64_t capacity, std::int64_t outer, const Tensor& position, const Tensor& padded_row,
                  const Tensor& routed, const Tensor& kept) {
  const moe_math::SlotGroupArgs a{expert.data<std::int64_t>(),
                                  active.defined() ? active.data<std::uint8_t>() : nullptr,
                                  groups > 0 ? expert.size(0) / groups : 0,
                                  expert.size(1),
                                  num_experts,
                                  capacity,
                                  groups / outer,
                                  position.data<std::int64_t>(),
                                  padded_row.data<std::int64_t>(),
                                  routed.data<std::int64_t>(),
                                  kept.data<std::int64_t>()};
  std::int64_t bad = INT64_MAX;  // the first bad choice over all groups
  const int nthreads = threads_for(saturating_mul(expert.numel(), 4));
#pragma omp parallel num_threads(nthreads) if (nthreads > 1)
  {
    std::vector<std::int64_t> taken(static_cast<std::size_t>(num_experts));
#pragma omp for schedule(static) reduction(min : bad)
    for (std::int64_t g = 0; g < groups; ++g) {
      const std::int64_t b = moe_math::assign_group_slots(a, g, taken.data());
      if (b >= 0) bad = std::min(bad, b);
    }
  }
  if (bad != INT64_MAX)
    fail("assign_slots", "expert id {} out of range [0, {})", a.expert[bad], num_experts);
}

void dispatch_rows(const Tensor& x, const Tensor& row, const Tensor& scale, const Tensor& out) {
  bool distinct = true;
  const std::int64_t n = x.size(0), d = x.size(1), k = row.size(1), R = out.size(0);
  // The bitset (R / 8 bytes) is needed, and small next to out, only when out has elements.
  const std::vector<std::uint64_t> seen =
      scan_rows("dispatch_rows", row, R, /*require_distinct=*/true, distinct, /*want_bitset=*/R > 0 && d > 0);
  if (R == 0 || d == 0) return;
  const std::int64_t* rp = row.data<std::int64_t>();
  visit_floating(x.dtype(), "dispatch_rows", [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* xp = x.data<T>();
    const T* sp = scale.data<T>();
    T* op = out.data<T>();
    // out is not pre-filled: only rows no (t, j) targets are zeroed (none in a compact buffer),
    // the rest are written once by the scatter. One parallel region, two loops.
    const int nthreads = threads_for(saturating_mul(std::max(n * k, R), d));
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
    const int nthreads = threads_for(saturating_mul(n * std::max<std::int64_t>(k, 1), d));
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
    const int nthreads = threads_for(saturating_mul(n * k, std::max<std::int64_t>(d, 1)));
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

}  // namespace moegrad::core::cpu

namespace moegrad::core {

const MoeKernels MoeKernels::cpu = {
    .check_rows = cpu::check_rows,
    .dispatch_rows = cpu::dispatch_rows,
    .combine_rows = cpu::combine_rows,
    .row_dot = cpu::row_dot,
    .assign_slots = cpu::assign_slots,
};

}  // namespace moegrad::core
