// MoE row ops and grouped GEMM: validate once, make operands contiguous, allocate, call the
// kernel of the same name in the operands' device's MoeKernels (core/kernels/moe.h). The grouped
// GEMMs are planned here once for both devices and run by GemmKernels::grouped.
#include "core/ops/moe.h"

#include <vector>

#include "core/checked_math.h"
#include "core/ops/creation.h"
#include "core/ops/dispatch.h"
#include "core/ops/gemm_operands.h"
#include "core/backend.h"
#include "core/kernels/gemm.h"
#include "core/kernels/moe.h"
#include "core/ops/reduce.h"
#include "core/ops/views.h"

namespace moegrad::core {
namespace {

// The float operands share one floating dtype.
DType float_dtype(const char* op, std::initializer_list<const Tensor*> tensors) {
  const DType dt = common_dtype(op, tensors);
  MOEGRAD_CHECK(is_floating(dt), op, "needs f32 or f64, got {}", describe(**tensors.begin()));
  return dt;
}

void check_matrix(const char* op, const Tensor& t, const char* what, const char* form) {
  MOEGRAD_CHECK(t.dim() == 2, op, "{} must be {}, got {}", what, form, describe(t));
}

// row is i64 [T, k]; T must equal `tokens` (taken from `source`) when tokens >= 0.
void check_row(const char* op, const Tensor& row, std::int64_t tokens, const char* source) {
  const bool ok = row.dtype() == DType::i64 && row.dim() == 2;
  if (tokens < 0) {
    MOEGRAD_CHECK(ok, op, "row must be i64 [T, k], got {}", describe(row));
  } else {
    MOEGRAD_CHECK(ok && row.size(0) == tokens, op,
                  "row must be i64 [T, k] with T = {} ({}), got {}", tokens, source, describe(row));
  }
}

// A per-(t, j) float operand (scale, weight) has row's shape.
void check_like_row(const char* op, const Tensor& t, const char* what, const Tensor& row) {
  MOEGRAD_CHECK(t.shape() == row.shape(), op, "{} must be [T, k] = {} like row, got {}", what,
                shape_str(row.shape()), describe(t));
}

// offsets: i64 [E + 1] on the CPU, 0 = off[0] <= ... <= off[E] = rows. groups < 0: any E.
std::vector<std::int64_t> read_offsets(const char* op, const Tensor& offsets, std::int64_t groups,
                                       std::int64_t rows) {
  check_defined(op, offsets, "offsets");
  MOEGRAD_CHECK(offsets.device().is_cpu(), op, "offsets must be on the cpu, got {} on {}",
                describe(offsets), offsets.device().str());
  MOEGRAD_CHECK(offsets.dtype() == DType::i64 && offsets.dim() == 1 && offsets.numel() >= 1, op,
                "offsets must be i64 [E + 1], got {}", describe(offsets));
  if (groups >= 0)
    MOEGRAD_CHECK(offsets.numel() == groups + 1, op,
                  "offsets {} must have E + 1 = {} entries for E = {} expert weights",
                  describe(offsets), groups + 1, groups);
  std::vector<std::int64_t> off = offsets.to_vector<std::int64_t>();
  MOEGRAD_CHECK(off.front() == 0, op, "offsets must start at 0, got {}", off.front());
  for (std::size_t e = 1; e < off.size(); ++e)
    MOEGRAD_CHECK(off[e] >= off[e - 1], op,
                  "offsets must be non-decreasing, got {} after {} (entries {} and {})", off[e],
                  off[e - 1], e - 1, e);
  MOEGRAD_CHECK(off.back() == rows, op, "offsets must end at R = {} (x rows), got {}", rows,
                off.back());
  return off;
}

// One GEMM item per group with rows (CUDA batches equal sizes). Group e
// starts at row off[e]; its operand offsets (in elements) are row_step * off[e] + group_step * e
// for A, B and C.
struct Steps {
  std::int64_t row, group;
};
struct GroupPlan {
  GemmGroups items;
  std::vector<std::int64_t> empty;  // groups without rows
};

// f(TypeTag<operand type>, TypeTag<result type>) for the kernel of gemm_dtypes' choice.
template <class F>
void visit_gemm(const GemmDTypes& dt, const char* op, F&& f) {
  if (dt.operands == DType::bf16) return f(TypeTag<Bf16>{}, TypeTag<float>{});
  visit_floating(dt.operands, op, [&](auto tag) { f(tag, tag); });
}

GroupPlan plan_groups(const std::vector<std::int64_t>& off, bool vary_k, Steps a, Steps b, Steps c) {
  GroupPlan plan;
  plan.items.vary_k = vary_k;
  for (std::int64_t e = 0; e + 1 < static_cast<std::int64_t>(off.size()); ++e) {
    const std::int64_t rows = off[e + 1] - off[e];
    if (rows == 0)
      plan.empty.push_back(e);
    else
      plan.items.add(rows, a.row * off[e] + a.group * e, b.row * off[e] + b.group * e, c.row * off[e] + c.group * e);
  }
  return plan;
}

}  // namespace

SlotAssignment assign_slots(const Tensor& expert, const Tensor& active, std::int64_t groups,
                            std::int64_t num_experts, std::int64_t capacity, std::int64_t outer) {
  const char* op = "assign_slots";
  check_defined(op, expert, "expert");
  MOEGRAD_CHECK(expert.dtype() == DType::i64 && expert.dim() == 2, op, "expert must be i64 [G * n, k], got {}",
                describe(expert));
  MOEGRAD_CHECK(groups >= 1 && outer >= 1 && groups % outer == 0 && expert.size(0) % groups == 0, op,
                "need groups >= 1 dividing the {} tokens of expert {} and divisible by outer = {}, got groups = {}",
                expert.size(0), describe(expert), outer, groups);
  MOEGRAD_CHECK(num_experts >= 1 && capacity >= 1, op, "need num_experts >= 1 and capacity >= 1, got {} and {}",
                num_experts, capacity);
  // padded_row reaches G * E * capacity (the padded buffer's rows): checked before anything is
  // allocated or copied (expert may be a broadcast view of a huge batch).
  std::int64_t padded_rows = 0;
  if (!mul_fits(groups, num_experts, padded_rows) || !mul_fits(padded_rows, capacity, padded_rows))
    fail(op, "the padded buffer of {} groups x {} experts x capacity {} is too large: its row count overflows int64",
         groups, num_experts, capacity);
  const Device dev = expert.device();
  Tensor on;
  if (active.defined()) {
    MOEGRAD_CHECK(active.dtype() == DType::u8 && active.shape() == expert.shape(), op,
                  "active must be u8 with expert's shape {}, got {}", shape_str(expert.shape()), describe(active));
    on = contiguous(to_device(active, dev));
  }
  const Tensor ex = contiguous(expert);
  SlotAssignment s{empty_for(op, ex.shape(), {DType::i64, dev}), empty_for(op, ex.shape(), {DType::i64, dev}),
                   empty_for(op, {groups, num_experts}, {DType::i64, dev}), empty_for(op, {groups, num_experts}, {DType::i64, dev})};
  backend<MoeKernels>("assign_slots", dev).assign_slots(ex, on, groups, num_experts, capacity, outer, s.position, s.padded_row, s.routed, s.kept);
  return s;
}

Tensor dispatch_rows(const Tensor& x, const Tensor& row, const Tensor& scale,
                     std::int64_t num_rows) {
  const char* op = "dispatch_rows";
  check_defined(op, x, "x");
  check_defined(op, row, "row");
  check_defined(op, scale, "scale");
  const Device dev = common_device(op, {&x, &row, &scale});
  const DType dt = float_dtype(op, {&x, &scale});
  check_matrix(op, x, "x", "[T, d]");
  check_row(op, row, x.size(0), "x rows");
  check_like_row(op, scale, "scale", row);
  MOEGRAD_CHECK(num_rows >= 0, op, "num_rows must be >= 0, got {}", num_rows);
  Tensor out = empty_for(op, {num_rows, x.size(1)}, {dt, dev});  // the kernel zeroes untargeted rows
  backend<MoeKernels>("dispatch_rows", dev).dispatch_rows(contiguous(x), contiguous(row), contiguous(scale), out);
  return out;
}

Tensor combine_rows(const Tensor& y, const Tensor& row, const Tensor& weight) {
  const char* op = "combine_rows";
  check_defined(op, y, "y");
  check_defined(op, row, "row");
  check_defined(op, weight, "weight");
  const Device dev = common_device(op, {&y, &row, &weight});
  const DType dt = float_dtype(op, {&y, &weight});
  check_matrix(op, y, "y", "[R, d]");
  check_row(op, row, -1, "");
  check_like_row(op, weight, "weight", row);
  Tensor out = empty_for(op, {row.size(0), y.size(1)}, {dt, dev});
  backend<MoeKernels>("combine_rows", dev).combine_rows(contiguous(y), contiguous(row), contiguous(weight), out);
  return out;
}

Tensor row_dot(const Tensor& a, const Tensor& row, const Tensor& b) {
  const char* op = "row_dot";
  check_defined(op, a, "a");
  check_defined(op, row, "row");
  check_defined(op, b, "b");
  const Device dev = common_device(op, {&a, &row, &b});
  const DType dt = float_dtype(op, {&a, &b});
  check_matrix(op, a, "a", "[R, d]");
  check_matrix(op, b, "b", "[T, d]");
  MOEGRAD_CHECK(a.size(1) == b.size(1), op, "a {} and b {} differ in d", describe(a), describe(b));
  check_row(op, row, b.size(0), "b rows");
  Tensor out = empty_for(op, row.shape(), {dt, dev});
  backend<MoeKernels>("row_dot", dev).row_dot(contiguous(a), contiguous(row), contiguous(b), out);
  return out;
}

std::int64_t equal_group_rows(const std::vector<std::int64_t>& off) {
  if (off.size() < 2) return -1;
  const std::int64_t m = off[1];
  for (std::size_t e = 0; e < off.size(); ++e)
    if (std::int64_t want = 0; !mul_fits(static_cast<std::int64_t>(e), m, want) || off[e] != want) return -1;
  return m;
}

bool rows_distinct(const Tensor& row, std::int64_t num_rows) {
  const char* op = "rows_distinct";
  check_defined(op, row, "row");
  MOEGRAD_CHECK(row.dtype() == DType::i64, op, "row must be i64, got {}", describe(row));
  MOEGRAD_CHECK(num_rows >= 0, op, "num_rows must be >= 0, got {}", num_rows);
  // On CUDA the answer comes back to the host: a synchronisation (which also raises the
  // device's deferred errors).
  return backend<MoeKernels>(op, row.device()).check_rows(op, contiguous(row), num_rows, /*require_distinct=*/false);
}

Tensor grouped_matmul(const Tensor& x, const Tensor& w, const Tensor& offsets, bool transpose_w,
                      const Tensor& bias) {
  const char* op = "grouped_matmul";
  check_defined(op, x, "x");
  check_defined(op, w, "w");
  const Device dev = bias.defined() ? common_device(op, {&x, &w, &bias}) : common_device(op, {&x, &w});
  const GemmDTypes dt = gemm_dtypes(op, common_dtype(op, {&x, &w}));  // bf16 operands -> f32 out
  if (bias.defined())
    MOEGRAD_CHECK(bias.dtype() == dt.result, op, "bias must be {} (the product's dtype), got {}", dtype_name(dt.result),
                  describe(bias));
  check_matrix(op, x, "x", "[R, a]");
  MOEGRAD_CHECK(w.dim() == 3, op, "w must be {}, got {}", transpose_w ? "[E, b, a]" : "[E, a, b]",
                describe(w));
  const std::int64_t in = w.size(transpose_w ? 2 : 1), out_cols = w.size(transpose_w ? 1 : 2);
  MOEGRAD_CHECK(x.size(1) == in, op, "x {} and w {}{} differ in the inner dim: {} vs {}",
                describe(x), describe(w), transpose_w ? " (transposed)" : "", x.size(1), in);
  if (bias.defined())
    MOEGRAD_CHECK(bias.dim() == 2 && bias.size(0) == w.size(0) && bias.size(1) == out_cols, op,
                  "bias must be [E, b] = [{}, {}] for w {}, got {}", w.size(0), out_cols, describe(w), describe(bias));
  const auto off = read_offsets(op, offsets, w.size(0), x.size(0));
  Tensor out = empty_for(op, {x.size(0), out_cols}, {dt.result, dev});
  if (out.numel() == 0) return out;
  if (bias.defined()) {  // each group's rows start as its bias row; the GEMM then adds (beta = 1)
    const std::int64_t E = w.size(0), m = equal_group_rows(off);
    if (m >= 0) {
      copy_(reshape(out, {E, m, out_cols}), unsqueeze(bias, 1));  // copy_ broadcasts the source
    } else {
      for (std::int64_t e = 0; e < E; ++e)
        if (off[e + 1] > off[e])
          copy_(narrow(out, 0, off[e], off[e + 1] - off[e]), narrow(bias, 0, e, 1));
    }
  }
  if (in == 0) {  // an empty inner dim: the product is exactly zero (not left to the BLAS k == 0 rules)
    if (!bias.defined()) fill_(out, 0.0);
    return out;
  }
  // x_e [m, in] @ op(w_e) [in, out_cols] -> out_e [m, out_cols]; w_e stored [out_cols, in] or [in, out_cols].
  const Tensor xc = contiguous(gemm_operand(x, dt.operands)), wc = contiguous(gemm_operand(w, dt.operands));
  const GroupPlan plan = plan_groups(off, /*vary_k=*/false, {in, 0}, {0, in * out_cols}, {out_cols, 0});
  RowMajorGemm g;
  g.trans_b = transpose_w;
  g.n = out_cols;
  g.k = in;
  g.lda = in;
  g.ldb = transpose_w ? in : out_cols;
  g.ldc = out_cols;
  visit_gemm(dt, op, [&](auto in, auto res) {
    using T = typename decltype(in)::type;
    using Out = typename decltype(res)::type;
    backend<GemmKernels<T, Out>>(op, dev).grouped(g, Out(1), xc.data<T>(), wc.data<T>(), bias.defined() ? Out(1) : Out(0),
                                                  out.data<Out>(), plan.items, dev.index);
  });
  return out;
}

Tensor grouped_row_sums(const Tensor& y, const Tensor& offsets) {
  const char* op = "grouped_row_sums";
  check_defined(op, y, "y");
  check_matrix(op, y, "y", "[R, b]");
  const auto off = read_offsets(op, offsets, -1, y.size(0));
  const std::int64_t E = static_cast<std::int64_t>(off.size()) - 1, m = equal_group_rows(off), b = y.size(1);
  if (m > 0) return sum(reshape(y, {E, m, b}), {1});  // equal groups: one reduction
  Tensor out = zeros({E, b}, {y.dtype(), y.device()});
  for (std::int64_t e = 0; e < E; ++e)
    if (off[e + 1] > off[e]) copy_(select(out, 0, e), sum(narrow(y, 0, off[e], off[e + 1] - off[e]), {0}));
  return out;
}

Tensor grouped_matmul_weight_grad(const Tensor& x, const Tensor& gy, const Tensor& offsets,
                                  bool transpose_w) {
  const char* op = "grouped_matmul_weight_grad";
  check_defined(op, x, "x");
  check_defined(op, gy, "gy");
  const Device dev = common_device(op, {&x, &gy});
  const GemmDTypes dt = gemm_dtypes(op, common_dtype(op, {&x, &gy}));
  check_matrix(op, x, "x", "[R, a]");
  check_matrix(op, gy, "gy", "[R, b]");
  MOEGRAD_CHECK(x.size(0) == gy.size(0), op, "x {} and gy {} differ in R", describe(x),
                describe(gy));
  const auto off = read_offsets(op, offsets, -1, x.size(0));
  const std::int64_t groups = static_cast<std::int64_t>(off.size()) - 1;
  const std::int64_t a = x.size(1), b = gy.size(1);
  Tensor out = empty_for(op, transpose_w ? Shape{groups, b, a} : Shape{groups, a, b}, {dt.result, dev});
  if (out.numel() == 0) return out;
  // dW_e = x_e^T @ gy_e [a, b], or gy_e^T @ x_e [b, a]: the first operand transposed by the BLAS.
  const Tensor first = contiguous(gemm_operand(transpose_w ? gy : x, dt.operands));
  const Tensor second = contiguous(gemm_operand(transpose_w ? x : gy, dt.operands));
  const std::int64_t p = first.size(1), q = second.size(1);  // dW_e is [p, q]
  const GroupPlan plan = plan_groups(off, /*vary_k=*/true, {p, 0}, {q, 0}, {0, a * b});
  for (const std::int64_t e : plan.empty) fill_(select(out, 0, e), 0.0);  // no rows: an exact zero gradient
  RowMajorGemm g;
  g.trans_a = true;
  g.m = p;
  g.n = q;
  g.lda = p;
  g.ldb = q;
  g.ldc = q;
  visit_gemm(dt, op, [&](auto in, auto res) {
    using T = typename decltype(in)::type;
    using Out = typename decltype(res)::type;
    backend<GemmKernels<T, Out>>(op, dev).grouped(g, Out(1), first.data<T>(), second.data<T>(), Out(0),
                                                  out.data<Out>(), plan.items, dev.index);
  });
  return out;
}

}  // namespace moegrad::core
