// Argument checks shared by every ProcessGroup implementation, so each backend rejects bad input
// with the same one-line messages ("[all_to_all_v] ...").
#pragma once
#include <cstdint>
#include <span>

#include "dist/process_group.h"

namespace moegrad::dist {

// t defined; returns t.size(0) (a 0-d tensor is one row).
std::int64_t rows_of(const char* op, const Tensor& t);
// send_rows / recv_rows: one count >= 0 per member, send_rows summing to t's rows.
// Returns sum(recv_rows).
std::int64_t check_all_to_all_args(const char* op, const ProcessGroup& g, const Tensor& t,
                                   std::span<const std::int64_t> send_rows, std::span<const std::int64_t> recv_rows);
// A sum of b8 is not a b8 value: only max (any) and min (all) are.
void check_reduction(const char* op, const Tensor& t, Reduction r);
void check_root(const char* op, const ProcessGroup& g, int root);
// Shape [rows, rest...] with rows replaced; a 0-d t is treated as [1].
core::Shape with_rows(const Tensor& t, std::int64_t rows);
// Bytes of one row (elements of dims 1.. times the element size).
std::int64_t row_bytes(const Tensor& t);

}  // namespace moegrad::dist
