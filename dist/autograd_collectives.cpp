#include "dist/autograd_collectives.h"

#include "autograd/node.h"
#include "autograd/registry.h"
#include "core/ops.h"

namespace moegrad::dist {

MOEGRAD_DIFFERENTIABLE("dist.all_to_all_v");

// Every member must run the backward too (it is a collective): a rank whose input needs no
// gradient while another's does would leave the others waiting until the collective timeout.
ag::Variable all_to_all_v(const ag::Variable& x, std::shared_ptr<ProcessGroup> g, std::vector<std::int64_t> send_rows,
                          std::vector<std::int64_t> recv_rows) {
  MOEGRAD_CHECK(g != nullptr, "all_to_all_v", "the process group is null");
  Tensor y = g->all_to_all_v(core::contiguous(x.value()), send_rows, recv_rows);
  return ag::record("dist.all_to_all_v", std::move(y), {x},
                    [g = std::move(g), send_rows = std::move(send_rows), recv_rows = std::move(recv_rows)](
                        Tensor gy, const ag::Needs&) {
                      // The rows came from member q's send; their gradients go back the same way.
                      return ag::Grads{g->all_to_all_v(core::contiguous(gy), recv_rows, send_rows)};
                    });
}

}  // namespace moegrad::dist
