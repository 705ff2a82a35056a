// CPU reduction kernels (ReduceKernels::cpu, core/kernels/reduce.h). Every reduction is planned
// as x[A, R, B] (reduce over R) on dense data:
//  - B == 1: rows of R contiguous elements, folded with independent accumulators in a loop
//    the compiler vectorises; rows run in parallel, or a long row is split across threads;
//  - B > 1: columns (out[a, b] += x[a, r, b]), rows streamed whole (in chunks of kSumBlock
//    columns whose double accumulators stay in cache), four rows per pass; slabs run in
//    parallel, or R is split across threads (per-thread partials), or the columns are.
// The plan comes from the ops layer: strided inputs are used in place when some order of their
// dims is dense; otherwise the reduced dims were permuted last and the tensor copied.
// Thread partials are combined in thread order, so results are deterministic for a given
// thread count.
// One-dim ops (max/min with indices, softmax family, cumsum) take contiguous [A, R, B] lines.
#include "core/kernels/reduce.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <type_traits>
#include <vector>

#include "core/cpu/loops.h"
#include "core/kernels/fast_exp.h"
#include "core/kernels/reduce_math.h"
#include "core/kernels/reduce_plan.h"

namespace moegrad::core::cpu {
namespace {

using std::int64_t;

using math::AccOf;
using math::is_nan;
using math::MaxOp;
using math::MeanOp;
using math::MinOp;
using math::Norm1Op;
using math::Norm2Op;
using math::NormInfOp;
using math::NormPOp;
using math::SumOp;

constexpr int64_t kSumBlock = 8192;  // columns per chunk in reductions' column mode
constexpr int64_t kMaxPartials = int64_t{1} << 22;  // per-thread partial columns, in all
constexpr int64_t kColBlock = 512;   // columns per block in the one-dim ops
constexpr int kLanes = 16;          // independent accumulators in row mode

// The reduction ops (identity, step, combine, finalize) are core/kernels/reduce_math.h's, shared with
// the CUDA kernels.

// Fold n contiguous elements with kLanes independent accumulators (vectorisable).
template <class Op>
typename Op::Acc reduce_row(const Op& op, const typename Op::In* p, int64_t n) {
  using Acc = typename Op::Acc;
  Acc acc[kLanes];
  for (int k = 0; k < kLanes; ++k) acc[k] = op.identity();
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
#pragma omp simd
    for (int k = 0; k < kLanes; ++k) acc[k] = op.step(acc[k], p[i + k]);
  }
  Acc tail = op.identity();
  for (; i < n; ++i) tail = op.step(tail, p[i]);
  for (int w = kLanes / 2; w > 0; w /= 2)  // pairwise tree, fixed order
    for (int k = 0; k < w; ++k) acc[k] = op.combine(acc[k], acc[k + w]);
  return op.combine(acc[0], tail);
}

// acc[j] folds rows r < R of columns j < nb, element (r, j) at p[r * ld + j]. Four rows per
// pass over acc keep the accumulator traffic low; the j loop is stride 1 and vectorises.
template <class Op>
void fold_columns(const Op& op, const typename Op::In* p, int64_t ld, int64_t R, int64_t nb,
                  typename Op::Acc* acc) {
  int64_t r = 0;
  for (; r + 4 <= R; r += 4) {
    const auto* r0 = p + r * ld;
    const auto* r1 = r0 + ld;
    const auto* r2 = r1 + ld;
    const auto* r3 = r2 + ld;
#pragma omp simd
    for (int64_t j = 0; j < nb; ++j)
      acc[j] = op.step(op.step(op.step(op.step(acc[j], r0[j]), r1[j]), r2[j]), r3[j]);
  }
  for (; r < R; ++r) {
    const auto* row = p + r * ld;
#pragma omp simd
    for (int64_t j = 0; j < nb; ++j) acc[j] = op.step(acc[j], row[j]);
  }
}

// ---- planning: x as dense [A, R, B] (core/kernels/reduce_plan.h) ----

template <class T> struct Plan {
  Tensor keep;  // owns the data (x itself or a contiguous copy)
  const T* base = nullptr;
  int64_t A = 1, R = 1, B = 1;
};

template <class T> Plan<T> plan(const ReducePlan& P) {
  const T* base = P.data.data<T>();
  return {P.data, base, P.A, P.R, P.B};
}

// ---- the generic reduction driver ----

template <class Op>
void reduce_into(const ReducePlan& rp, const Tensor& out, const Op& op) {
  using T = typename Op::In;
  using Acc = typename Op::Acc;
  using Out = typename Op::Out;
  Out* o = out.data<Out>();
  const int64_t K = out.numel();
  if (K == 0) return;
  if (rp.data.numel() == 0) {  // empty reduced extent
    const Out v = op.finalize(op.identity(), 0);
    std::fill(o, o + K, v);
    return;
  }
  const Plan<T> P = plan<T>(rp);
  const int64_t A = P.A, R = P.R, B = P.B;
  const T* p = P.base;
  const int nthreads = threads_for(A * R * B);

  if (R == 1) {  // reducing size-1 dims only: an elementwise pass
#pragma omp parallel for simd schedule(static) num_threads(nthreads) if (nthreads > 1)
    for (int64_t i = 0; i < A * B; ++i) o[i] = op.finalize(op.step(op.identity(), p[i]), 1);
    return;
  }
  if (B == 1) {
    if (nthreads == 1 || A >= 4 * nthreads) {
#pragma omp parallel for schedule(static) num_threads(nthreads) if (nthreads > 1)
      for (int64_t a = 0; a < A; ++a) o[a] = op.finalize(reduce_row(op, p + a * R, R), R);
      return;
    }
    // Few long rows: split each row across threads, combine partials in thread order.
    std::vector<Acc> part(static_cast<std::size_t>(nthreads));
    for (int64_t a = 0; a < A; ++a) {
      const T* row = p + a * R;
      int used = 1;
#pragma omp parallel num_threads(nthreads)
      {
        const int t = omp_get_thread_num(), n = omp_get_num_threads();
        if (t == 0) used = n;
        part[t] = reduce_row(op, row + R * t / n, R * (t + 1) / n - R * t / n);
      }
      Acc acc = part[0];
      for (int t = 1; t < used; ++t) acc = op.combine(acc, part[t]);
      o[a] = op.finalize(acc, R);
    }
    return;
  }

  // Column mode. Rows are streamed whole (in chunks of kSumBlock columns whose accumulators
  // stay in L2), which keeps the reads long and sequential.
  // Columns [c0, c1) of slab a, all R rows, finalised into o.
  auto slab_columns = [&](int64_t a, int64_t c0, int64_t c1, std::vector<Acc>& acc) {
    for (int64_t b0 = c0; b0 < c1; b0 += kSumBlock) {
      const int64_t nb = std::min(kSumBlock, c1 - b0);
      std::fill(acc.begin(), acc.begin() + nb, op.identity());
      fold_columns(op, p + a * R * B + b0, B, R, nb, acc.data());
      Out* dst = o + a * B + b0;
      for (int64_t j = 0; j < nb; ++j) dst[j] = op.finalize(acc[j], R);
    }
  };
  const int64_t AB = A * B;
  if (nthreads == 1 || A >= 2 * nthreads) {  // whole slabs per thread
#pragma omp parallel num_threads(nthreads) if (nthreads > 1)
    {
      std::vector<Acc> acc(static_cast<std::size_t>(std::min(kSumBlock, B)));
#pragma omp for schedule(static)
      for (int64_t a = 0; a < A; ++a) slab_columns(a, 0, B, acc);
    }
    return;
  }
  if (R >= 8 * nthreads && nthreads * AB <= kMaxPartials) {
    // Long R: each thread folds a range of rows into its own partial columns, then the
    // partials are combined in thread order.
    std::vector<Acc> part(static_cast<std::size_t>(nthreads * AB), op.identity());
    int used = 1;
#pragma omp parallel num_threads(nthreads)
    {
      const int t = omp_get_thread_num(), n = omp_get_num_threads();
      if (t == 0) used = n;
      const int64_t r0 = R * t / n, r1 = R * (t + 1) / n;
      Acc* acc = part.data() + t * AB;
      for (int64_t a = 0; a < A; ++a)
        for (int64_t b0 = 0; b0 < B; b0 += kSumBlock)
          fold_columns(op, p + (a * R + r0) * B + b0, B, r1 - r0, std::min(kSumBlock, B - b0),
                       acc + a * B + b0);
    }
#pragma omp parallel for schedule(static) num_threads(nthreads) if (AB >= kParallelGrain)
    for (int64_t i = 0; i < AB; ++i) {
      Acc acc = part[i];
      for (int t = 1; t < used; ++t) acc = op.combine(acc, part[t * AB + i]);
      o[i] = op.finalize(acc, R);
    }
    return;
  }
  // Wide rows: each thread takes a range of columns (a multiple of 16) of every slab.
#pragma omp parallel num_threads(nthreads)
  {
    const int t = omp_get_thread_num(), n = omp_get_num_threads();
    const int64_t c0 = std::min(B, (B * t / n + 15) / 16 * 16);
    const int64_t c1 = t + 1 == n ? B : std::min(B, (B * (t + 1) / n + 15) / 16 * 16);
    std::vector<Acc> acc(static_cast<std::size_t>(std::min(kSumBlock, B)));
    for (int64_t a = 0; a < A; ++a)
      if (c0 < c1) slab_columns(a, c0, c1, acc);
  }
}

// ---- one-dim ops on contiguous x viewed as [A, R, B] ----

using Lines = ReduceLines;

Lines lines(const Shape& shape, int64_t dim) { return reduce_lines(shape, dim); }

// row(a): line a when B == 1 (elements (a*R + r)); col(a, b0, nb): columns [b0, b0+nb) of
// slab a (elements (a*R + r)*B + b). Parallel over lines / column blocks.
template <class RowFn, class ColFn>
void for_each_line(const Lines& L, RowFn row, ColFn col) {
  const int nthreads = threads_for(L.A * L.R * L.B);
  if (L.A * L.R * L.B == 0) return;
  if (L.B == 1) {
#pragma omp parallel for schedule(static) num_threads(nthreads) if (nthreads > 1)
    for (int64_t a = 0; a < L.A; ++a) row(a);
    return;
  }
  const int64_t nblk = (L.B + kColBlock - 1) / kColBlock;
  const int64_t tasks = L.A * nblk;
#pragma omp parallel for schedule(static) num_threads(nthreads) if (nthreads > 1)
  for (int64_t task = 0; task < tasks; ++task) {
    const int64_t a = task / nblk, b0 = (task % nblk) * kColBlock;
    col(a, b0, std::min(kColBlock, L.B - b0));
  }
}

// Values/indices of the first extreme along dim (NaN counts as the extreme, first NaN wins).
template <class T, bool IsMax>
void extreme_with_index(const Tensor& x, int64_t dim, const Tensor& values,
                        const Tensor& indices) {
  const Lines L = lines(x.shape(), dim);
  const T* p = x.data<T>();
  T* vo = values.defined() ? values.data<T>() : nullptr;
  int64_t* io = indices.data<int64_t>();
  using Op = std::conditional_t<IsMax, MaxOp<T>, MinOp<T>>;
  const Op op;
  auto better = [](T v, T cur) { return math::extreme_better<IsMax>(v, cur); };
  for_each_line(
      L,
      [&](int64_t a) {
        const T* row = p + a * L.R;
        const T m = reduce_row(op, row, L.R);  // vectorised pass, then find its first index
        int64_t i = 0;
        if (is_nan(m)) {
          while (!is_nan(row[i])) ++i;
        } else {
          while (row[i] != m) ++i;
        }
        if (vo) vo[a] = m;
        io[a] = i;
      },
      [&](int64_t a, int64_t b0, int64_t nb) {
        T val[kColBlock];
        int64_t idx[kColBlock];
        const T* first = p + a * L.R * L.B + b0;
#pragma omp simd
        for (int64_t j = 0; j < nb; ++j) {
          val[j] = first[j];
          idx[j] = 0;
        }
        for (int64_t r = 1; r < L.R; ++r) {
          const T* row = p + (a * L.R + r) * L.B + b0;
#pragma omp simd
          for (int64_t j = 0; j < nb; ++j) {
            const T v = row[j];
            const bool take = better(v, val[j]);
            val[j] = take ? v : val[j];
            idx[j] = take ? r : idx[j];
          }
        }
#pragma omp simd
        for (int64_t j = 0; j < nb; ++j) {
          if (vo) vo[a * L.B + b0 + j] = val[j];
          io[a * L.B + b0 + j] = idx[j];
        }
      });
}

template <bool IsMax>
void extreme_dispatch(const char* name, const Tensor& x, int64_t dim, const Tensor& values,
                      const Tensor& indices) {
  visit_numeric(x.dtype(), name, [&](auto tag) {
    using T = typename decltype(tag)::type;
    extreme_with_index<T, IsMax>(x, dim, values, indices);
  });
}

// Sum over i < n of exp(row[i] - m), accumulated in double; the exps are also stored to dst
// when given. Exps go through a small buffer so that both loops vectorise.
template <class T> double sum_exp(const T* row, int64_t n, T m, T* dst) {
  constexpr int64_t kChunk = 256;
  T buf[kChunk];
  double s = 0;
  for (int64_t i0 = 0; i0 < n; i0 += kChunk) {
    const int64_t nb = std::min(kChunk, n - i0);
    T* e = dst ? dst + i0 : buf;
    const T* x = row + i0;
#pragma omp simd
    for (int64_t j = 0; j < nb; ++j) e[j] = math::softmax_exp(x[j], m);
    s += reduce_row(SumOp<T>{}, e, nb);
  }
  return s;
}

// logsumexp over dense [A, R, B]: max, then log(sum exp(x - max)) + max, with the shift
// replaced by 0 when the max is infinite (all -inf gives -inf, +inf stays +inf).
template <class T> void logsumexp_impl(const ReducePlan& rp, const Tensor& out) {
  T* o = out.data<T>();
  const int64_t K = out.numel();
  if (K == 0) return;
  if (rp.data.numel() == 0) {
    std::fill(o, o + K, -std::numeric_limits<T>::infinity());
    return;
  }
  const Plan<T> P = plan<T>(rp);
  const Lines L{P.A, P.R, P.B};
  const T* p = P.base;
  const MaxOp<T> maxop;
  auto shift_of = [](T m) { return math::lse_shift(m); };
  for_each_line(
      L,
      [&](int64_t a) {
        const T* row = p + a * L.R;
        const T m = shift_of(reduce_row(maxop, row, L.R));
        o[a] = math::lse_finish<T>(sum_exp<T>(row, L.R, m, nullptr), m);
      },
      [&](int64_t a, int64_t b0, int64_t nb) {
        T m[kColBlock];
        double s[kColBlock];
#pragma omp simd
        for (int64_t j = 0; j < nb; ++j) {
          m[j] = maxop.identity();
          s[j] = 0;
        }
        for (int64_t r = 0; r < L.R; ++r) {
          const T* row = p + (a * L.R + r) * L.B + b0;
#pragma omp simd
          for (int64_t j = 0; j < nb; ++j) m[j] = maxop.step(m[j], row[j]);
        }
#pragma omp simd
        for (int64_t j = 0; j < nb; ++j) m[j] = shift_of(m[j]);
        for (int64_t r = 0; r < L.R; ++r) {
          const T* row = p + (a * L.R + r) * L.B + b0;
#pragma omp simd
          for (int64_t j = 0; j < nb; ++j) s[j] += math::softmax_exp(row[j], m[j]);
        }
#pragma omp simd
        for (int64_t j = 0; j < nb; ++j)
          o[a * L.B + b0 + j] = math::lse_finish<T>(s[j], m[j]);
      });
}

template <class T, bool Log> void softmax_impl(const Tensor& x, int64_t dim, const Tensor& out) {
  const Lines L = lines(x.shape(), dim);
  const T* p = x.data<T>();
  T* o = out.data<T>();
  const MaxOp<T> maxop;
  for_each_line(
      L,
      [&](int64_t a) {
        const T* row = p + a * L.R;
        T* dst = o + a * L.R;
        const T m = reduce_row(maxop, row, L.R);
        if constexpr (Log) {
          const T ls = math::log_softmax_norm<T>(sum_exp<T>(row, L.R, m, nullptr));
#pragma omp simd
          for (int64_t i = 0; i < L.R; ++i) dst[i] = math::log_softmax_out(row[i], m, ls);
        } else {
          const T inv = math::softmax_scale<T>(sum_exp<T>(row, L.R, m, dst));
#pragma omp simd
          for (int64_t i = 0; i < L.R; ++i) dst[i] *= inv;
        }
      },
      [&](int64_t a, int64_t b0, int64_t nb) {
        T m[kColBlock];
        double s[kColBlock];
#pragma omp simd
        for (int64_t j = 0; j < nb; ++j) {
          m[j] = maxop.identity();
          s[j] = 0;
        }
        const int64_t base = a * L.R * L.B + b0;
        for (int64_t r = 0; r < L.R; ++r) {
          const T* row = p + base + r * L.B;
#pragma omp simd
          for (int64_t j = 0; j < nb; ++j) m[j] = maxop.step(m[j], row[j]);
        }
        for (int64_t r = 0; r < L.R; ++r) {
          const T* row = p + base + r * L.B;
          T* dst = o + base + r * L.B;
#pragma omp simd
          for (int64_t j = 0; j < nb; ++j) {
            const T e = math::softmax_exp(row[j], m[j]);
            if constexpr (!Log) dst[j] = e;
            s[j] += e;
          }
        }
        T fin[kColBlock];
#pragma omp simd
        for (int64_t j = 0; j < nb; ++j)
          fin[j] = Log ? math::log_softmax_norm<T>(s[j]) : math::softmax_scale<T>(s[j]);
        for (int64_t r = 0; r < L.R; ++r) {
          const T* row = p + base + r * L.B;
          T* dst = o + base + r * L.B;
#pragma omp simd
          for (int64_t j = 0; j < nb; ++j) {
            if constexpr (Log) dst[j] = math::log_softmax_out(row[j], m[j], fin[j]);
            else dst[j] *= fin[j];
          }
        }
      });
}

// softmax: dx = y * (gy - sum(gy * y)); log_softmax: dx = gy - exp(y) * sum(gy).
template <class T, bool Log>
void softmax_backward_impl(const Tensor& gy, const Tensor& y, int64_t dim, const Tensor& out) {
  const Lines L = lines(y.shape(), dim);
  const T* g = gy.data<T>();
  const T* yp = y.data<T>();
  T* o = out.data<T>();
  for_each_line(
      L,
      [&](int64_t a) {
        const T* gr = g + a * L.R;
        const T* yr = yp + a * L.R;
        T* dst = o + a * L.R;
        double acc = 0;
#pragma omp simd reduction(+ : acc)
        for (int64_t i = 0; i < L.R; ++i) acc += math::softmax_backward_term<Log>(gr[i], yr[i]);
        const T s = static_cast<T>(acc);
#pragma omp simd
        for (int64_t j = 0; j < L.R; ++j) dst[j] = math::softmax_backward_out<Log>(gr[j], yr[j], s);
      },
      [&](int64_t a, int64_t b0, int64_t nb) {
        double acc[kColBlock];
#pragma omp simd
        for (int64_t j = 0; j < nb; ++j) acc[j] = 0;
        const int64_t base = a * L.R * L.B + b0;
        for (int64_t r = 0; r < L.R; ++r) {
          const T* gr = g + base + r * L.B;
          const T* yr = yp + base + r * L.B;
#pragma omp simd
          for (int64_t j = 0; j < nb; ++j) acc[j] += math::softmax_backward_term<Log>(gr[j], yr[j]);
        }
        T s[kColBlock];
#pragma omp simd
        for (int64_t j = 0; j < nb; ++j) s[j] = static_cast<T>(acc[j]);
        for (int64_t r = 0; r < L.R; ++r) {
          const T* gr = g + base + r * L.B;
          const T* yr = yp + base + r * L.B;
          T* dst = o + base + r * L.B;
#pragma omp simd
          for (int64_t j = 0; j < nb; ++j)
            dst[j] = math::softmax_backward_out<Log>(gr[j], yr[j], s[j]);
        }
      });
}

template <class T>
void cumsum_impl(const Tensor& x, int64_t dim, bool exclusive, bool reverse, const Tensor& out) {
  using Acc = AccOf<T>;
  const Lines L = lines(x.shape(), dim);
  const T* p = x.data<T>();
  T* o = out.data<T>();
  // Position of step k along the line (forward or reverse).
  auto at = [&](int64_t k) { return reverse ? L.R - 1 - k : k; };
  for_each_line(
      L,
      [&](int64_t a) {
        const T* row = p + a * L.R;
        T* dst = o + a * L.R;
        Acc acc = 0;
        for (int64_t k = 0; k < L.R; ++k) {
          const int64_t i = at(k);
          if (exclusive) {
            dst[i] = static_cast<T>(acc);
            acc += static_cast<Acc>(row[i]);
          } else {
            acc += static_cast<Acc>(row[i]);
            dst[i] = static_cast<T>(acc);
          }
        }
      },
      [&](int64_t a, int64_t b0, int64_t nb) {
        Acc acc[kColBlock];
#pragma omp simd
        for (int64_t j = 0; j < nb; ++j) acc[j] = 0;
        const int64_t base = a * L.R * L.B + b0;
        for (int64_t k = 0; k < L.R; ++k) {
          const int64_t r = at(k);
          const T* row = p + base + r * L.B;
          T* dst = o + base + r * L.B;
          if (exclusive) {
#pragma omp simd
            for (int64_t j = 0; j < nb; ++j) {
              dst[j] = static_cast<T>(acc[j]);
              acc[j] += static_cast<Acc>(row[j]);
            }
          } else {
#pragma omp simd
            for (int64_t j = 0; j < nb; ++j) {
              acc[j] += static_cast<Acc>(row[j]);
              dst[j] = static_cast<T>(acc[j]);
            }
          }
        }
      });
}

}  // namespace

#include "core/kernels/reduce_entry_points.inc"

// Throws at once on the CPU (the caller waits anyway).
void report_non_finite(const Tensor& x, const char* op, const char* what) {
  visit_floating(x.dtype(), op, [&](auto tag) {
    using T = typename decltype(tag)::type;
    const T* p = x.data<T>();
    for (int64_t i = 0; i < x.numel(); ++i)
      if (!std::isfinite(p[i])) fail(op, "{} contains NaN or Inf", what);
  });
}

}  // namespace moegrad::core::cpu

namespace moegrad::core {

const ReduceKernels ReduceKernels::cpu = {
    .sum = cpu::sum,
    .mean = cpu::mean,
    .amax = cpu::amax,
    .amin = cpu::amin,
    .logsumexp = cpu::logsumexp,
    .norm = cpu::norm,
    .max = cpu::max,
    .min = cpu::min,
    .argmax = cpu::argmax,
    .argmin = cpu::argmin,
    .softmax = cpu::softmax,
    .log_softmax = cpu::log_softmax,
    .softmax_backward = cpu::softmax_backward,
    .log_softmax_backward = cpu::log_softmax_backward,
    .cumsum = cpu::cumsum,
    .report_non_finite = cpu::report_non_finite,
};

}  // namespace moegrad::core
