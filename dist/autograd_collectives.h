// Collectives inside autograd graphs.
#pragma once
#include "autograd/variable.h"
#include "dist/process_group.h"

namespace moegrad::dist {

// The differentiable all-to-all: forward as ProcessGroup::all_to_all_v; its backward is the
// reverse exchange of the output's gradient (recv_rows and send_rows swapped).
ag::Variable all_to_all_v(const ag::Variable& x, std::shared_ptr<ProcessGroup> g, std::vector<std::int64_t> send_rows,
                          std::vector<std::int64_t> recv_rows);

}  // namespace moegrad::dist
