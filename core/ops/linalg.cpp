// matmul / matmul_into: argument checks, NumPy-style batch broadcasting and 1-D handling, the
// operands' precision (gemm_operands.h: bf16 x bf16 -> f32 under Precision::bf16) and the choice
// of a copy-free BLAS layout per operand. The GEMM itself is the gemm family
// (core/kernels/gemm.h) of the operands' device.
#include "core/ops/linalg.h"

#include <algorithm>
#include <vector>

#include "core/ops/creation.h"
#include "core/ops/dispatch.h"
#include "core/ops/gemm_operands.h"
#include "core/backend.h"
#include "core/kernels/gemm.h"
#include "core/ops/views.h"

namespace moegrad::core {
namespace {

constexpr const char* kOp = "matmul";

// The product after 1-D promotion and trans flags: A [..., m, k], B [..., k, n] (views,
// not yet broadcast), the broadcast batch shape and the shape handed to the caller.
struct Plan {
  Tensor a, b;
  Shape batch;
  Shape out_shape;
  std::int64_t m = 0, n = 0, k = 0;
  GemmDTypes dtypes{DType::f32, DType::f32};  // the kernel's operands and result (gemm_operands.h)
  Device device;
};

Tensor broadcast_shrunk(const Tensor& t);

std::string operand_str(const Tensor& t, bool trans) {
  return shape_str(t.shape()) + (trans && t.dim() >= 2 ? "^T" : "");
}

Plan make_plan(const Tensor& a, const Tensor& b, bool trans_a, bool trans_b) {
  check_defined(kOp, a, "a");
  check_defined(kOp, b, "b");
  Plan p;
  p.device = common_device(kOp, {&a, &b});
  p.dtypes = gemm_dtypes(kOp, common_dtype(kOp, {&a, &b}));
  MOEGRAD_CHECK(a.dim() >= 1 && b.dim() >= 1, kOp, "needs operands of at least 1 dim, got {} and {}",
                describe(a), describe(b));
  // A 1-D operand is a row of a (or a column of b); trans flags do not apply to it.
  p.a = a.dim() == 1 ? unsqueeze(a, 0) : (trans_a ? transpose(a, -2, -1) : a);
  p.b = b.dim() == 1 ? unsqueeze(b, 1) : (trans_b ? transpose(b, -2, -1) : b);
  p.m = p.a.size(-2);
  p.k = p.a.size(-1);
  p.n = p.b.size(-1);
  MOEGRAD_CHECK(p.k == p.b.size(-2), kOp, "inner dims differ: {} vs {}", operand_str(a, trans_a),
                operand_str(b, trans_b));
  const Shape batch_a(p.a.shape().begin(), p.a.shape().end() - 2);
  const Shape batch_b(p.b.shape().begin(), p.b.shape().end() - 2);
  p.batch = broadcast_shapes(kOp, batch_a, batch_b);
  p.out_shape = p.batch;
  if (a.dim() > 1) p.out_shape.push_back(p.m);
  if (b.dim() > 1) p.out_shape.push_back(p.n);
  // bf16 operands: f32 ones are rounded here once (broadcast batch dims stay unexpanded).
  if (p.a.dtype() != p.dtypes.operands) p.a = gemm_operand(broadcast_shrunk(p.a), p.dtypes.operands);
  if (p.b.dtype() != p.dtypes.operands) p.b = gemm_operand(broadcast_shrunk(p.b), p.dtypes.operands);
  return p;
}

// Can BLAS read the last two dims of t ([rows, cols]) directly? Row-major with row stride ld
// (trans = false) or the transpose of a row-major [cols, rows] with row stride ld (trans =
// true). Strides of size-1 dims do not matter.
bool blas_layout(const Tensor& t, bool& trans, std::int64_t& ld) {
  const std::int64_t rows = t.size(-2), cols = t.size(-1);
  const std::int64_t rs = t.stride(-2), cs = t.stride(-1);
  if ((cols <= 1 || cs == 1) && (rows <= 1 || rs >= std::max<std::int64_t>(1, cols))) {
    trans = false;
    ld = rows <= 1 ? std::max<std::int64_t>(1, cols) : rs;
    return true;
  }
  if ((rows <= 1 || rs == 1) && (cols <= 1 || cs >= std::max<std::int64_t>(1, rows))) {
    trans = true;
    ld = cols <= 1 ? std::max<std::int64_t>(1, rows) : cs;
    return true;
  }
  return false;
}

// Per batch dim of `batch`, t's stride (0 where t lacks the dim or has size 1 there).
Shape batch_strides(const Tensor& t, const Shape& batch) {
  const std::int64_t nb = static_cast<std::int64_t>(batch.size());
  const std::int64_t tb = t.dim() - 2;
  Shape s(batch.size(), 0);
  for (std::int64_t d = 0; d < nb; ++d) {
    const std::int64_t td = d - (nb - tb);
    if (td >= 0 && t.size(td) != 1) s[d] = t.stride(td);
  }
  return s;
}

// t with its stride-0 (broadcast) batch dims shrunk to size 1, which batch_strides maps back to
// stride 0: a copy of it copies them once.
Tensor broadcast_shrunk(const Tensor& t) {
  Shape shape = t.shape();
  for (std::int64_t d = 0; d + 2 < t.dim(); ++d)
    if (t.stride(d) == 0) shape[d] = std::min<std::int64_t>(shape[d], 1);
  return shape == t.shape() ? t : as_strided(t, shape, t.strides(), t.offset());
}

// A contiguous copy of t for BLAS; broadcast batch dims stay broadcast.
Tensor contiguous_matrices(const Tensor& t) { return contiguous(broadcast_shrunk(t)); }

template <class T, class Out>
void run(const Plan& p, Out* out, double alpha, double beta) {
  const std::int64_t nbatch = shape_numel(p.batch);
  if (nbatch == 0 || p.m == 0 || p.n == 0) return;

  RowMajorGemm g;
  g.m = p.m;
  g.n = p.n;
  g.k = p.k;
  g.ldc = std::max<std::int64_t>(1, p.n);
  Tensor A = p.a, B = p.b;
  if (!blas_layout(A, g.trans_a, g.lda)) {
    A = contiguous_matrices(A);
    blas_layout(A, g.trans_a, g.lda);
  }
  if (!blas_layout(B, g.trans_b, g.ldb)) {
    B = contiguous_matrices(B);
    blas_layout(B, g.trans_b, g.ldb);
  }
  const T* pa = A.template data<T>();
  const T* pb = B.template data<T>();
  const Shape sa = batch_strides(A, p.batch), sb = batch_strides(B, p.batch);
  const std::int64_t nb = static_cast<std::int64_t>(p.batch.size());

  // B shared by every batch and A's batch dims continuing its rows: one GEMM with
  // batch * m rows (the [batch, seq, d] @ W case).
  if (nbatch > 1 && !g.trans_a && std::all_of(sb.begin(), sb.end(), [](auto s) { return s == 0; })) {
    bool merge = true;
    std::int64_t expected = g.lda * p.m;
    for (std::int64_t d = nb - 1; d >= 0 && merge; --d) {
      if (p.batch[d] == 1) continue;
      merge = sa[d] == expected;
      expected *= p.batch[d];
    }
    if (merge) {
      RowMajorGemm big = g;
      big.m = nbatch * p.m;
      const std::int64_t zero = 0;
      backend<GemmKernels<T, Out>>("matmul", p.device)
          .strided(big, Out(alpha), pa, pb, Out(beta), out, 1, &zero, &zero, &zero, p.device.index);
      return;
    }
  }

  std::vector<std::int64_t> off_a(nbatch), off_b(nbatch), off_c(nbatch);
  std::vector<std::int64_t> idx(nb, 0);
  std::int64_t oa = 0, ob = 0;
  for (std::int64_t i = 0; i < nbatch; ++i) {
    off_a[i] = oa;
    off_b[i] = ob;
    off_c[i] = i * p.m * p.n;
    for (std::int64_t d = nb - 1; d >= 0; --d) {  // advance the batch multi-index
      oa += sa[d];
      ob += sb[d];
      if (++idx[d] < p.batch[d]) break;
      oa -= sa[d] * p.batch[d];
      ob -= sb[d] * p.batch[d];
      idx[d] = 0;
    }
  }
  backend<GemmKernels<T, Out>>("matmul", p.device)
      .strided(g, Out(alpha), pa, pb, Out(beta), out, nbatch, off_a.data(), off_b.data(), off_c.data(), p.device.index);
}

void dispatch(const Plan& p, const Tensor& out, double alpha, double beta) {
  if (p.dtypes.operands == DType::bf16)
    run<Bf16, float>(p, out.data<float>(), alpha, beta);
  else if (p.dtypes.operands == DType::f32)
    run<float, float>(p, out.data<float>(), alpha, beta);
  else
    run<double, double>(p, out.data<double>(), alpha, beta);
}

// Element range [lo, hi] a view touches in its storage (strides are non-negative here).
std::pair<std::int64_t, std::int64_t> extent(const Tensor& t) {
  std::int64_t lo = t.offset(), hi = t.offset();
  for (std::int64_t d = 0; d < t.dim(); ++d) {
    const std::int64_t span = (t.size(d) - 1) * t.stride(d);
    (span < 0 ? lo : hi) += span;
  }
  return {lo, hi};
}

bool overlaps(const Tensor& x, const Tensor& y) {
  if (x.storage() != y.storage() || x.numel() == 0 || y.numel() == 0) return false;
  const auto [xl, xh] = extent(x);
  const auto [yl, yh] = extent(y);
  return xl <= yh && yl <= xh;
}

}  // namespace

Tensor matmul(const Tensor& a, const Tensor& b, bool trans_a, bool trans_b) {
  const Plan p = make_plan(a, b, trans_a, trans_b);
  Tensor out = empty_for(kOp, p.out_shape, {p.dtypes.result, p.device});
  dispatch(p, out, 1.0, 0.0);
  return out;
}

void matmul_into(const Tensor& out, const Tensor& a, const Tensor& b, bool trans_a, bool trans_b,
                 double alpha, double beta) {
  const Plan p = make_plan(a, b, trans_a, trans_b);
  check_defined(kOp, out, "out");
  common_device(kOp, {&out, &a});
  MOEGRAD_CHECK(out.dtype() == p.dtypes.result, kOp, "out is {} but the product of {} and {} is {}", describe(out),
                describe(a), describe(b), dtype_name(p.dtypes.result));
  MOEGRAD_CHECK(out.shape() == p.out_shape, kOp, "out has shape {} but the product has shape {}",
                shape_str(out.shape()), shape_str(p.out_shape));
  MOEGRAD_CHECK(out.is_contiguous(), kOp, "out must be contiguous, got strides {}",
                shape_str(out.strides()));
  MOEGRAD_CHECK(!overlaps(out, a) && !overlaps(out, b), kOp, "out must not overlap an input");
  dispatch(p, out, alpha, beta);
}

}  // namespace moegrad::core
