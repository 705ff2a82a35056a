#include "dist/validate.h"

#include "core/checked_math.h"

namespace moegrad::dist {

std::int64_t rows_of(const char* op, const Tensor& t) {
  MOEGRAD_CHECK(t.defined(), op, "the tensor is undefined");
  return t.dim() == 0 ? 1 : t.size(0);
}

std::int64_t check_all_to_all_args(const char* op, const ProcessGroup& g, const Tensor& t,
                                   std::span<const std::int64_t> send_rows, std::span<const std::int64_t> recv_rows) {
  const std::int64_t rows = rows_of(op, t);
  MOEGRAD_CHECK(t.dim() >= 1, op, "needs a tensor with at least one dim (rows along dim 0), got {}", core::describe(t));
  const auto n = static_cast<std::size_t>(g.size());
  MOEGRAD_CHECK(send_rows.size() == n && recv_rows.size() == n, op,
                "needs one send and one receive count per member of {}: got {} and {}", g.describe(), send_rows.size(),
                recv_rows.size());
  std::int64_t sent = 0, received = 0;
  for (std::size_t q = 0; q < n; ++q) {
    MOEGRAD_CHECK(send_rows[q] >= 0 && recv_rows[q] >= 0, op, "row counts must be >= 0: member {} has send {} and receive {}", q,
                  send_rows[q], recv_rows[q]);
    sent = core::checked_add(op, "the sent row count", sent, send_rows[q]);
    received = core::checked_add(op, "the received row count", received, recv_rows[q]);
  }
  MOEGRAD_CHECK(sent == rows, op, "the send counts sum to {} rows but the tensor {} has {}", sent, core::describe(t), rows);
  return received;
}

void check_reduction(const char* op, const Tensor& t, Reduction r) {
  MOEGRAD_CHECK(!(t.dtype() == core::DType::b8 && r == Reduction::sum), op,
                "a sum of b8 values is not a b8 value: use max (any) or min (all)");
}

void check_root(const char* op, const ProcessGroup& g, int root) {
  MOEGRAD_CHECK(root >= 0 && root < g.size(), op, "root {} is not a member of {}", root, g.describe());
}

core::Shape with_rows(const Tensor& t, std::int64_t rows) {
  core::Shape s = t.dim() == 0 ? core::Shape{1} : t.shape();
  s[0] = rows;
  return s;
}

std::int64_t row_bytes(const Tensor& t) {
  std::int64_t n = static_cast<std::int64_t>(core::dtype_size(t.dtype()));
  for (std::int64_t d = 1; d < t.dim(); ++d) n = core::checked_mul("dist", "a row's byte count", n, t.size(d));
  return n;
}

}  // namespace moegrad::dist
