// A 2-rank job in which rank 1 fails before a collective, for tests/tools/check_dist_faults.py:
//   dist_fault_probe stop <timeout_s>      rank 1 stops itself (SIGSTOP) before an all_reduce
//   dist_fault_probe stop-a2a <timeout_s>  ... before an all_to_all_v on its expert-parallel group
//   dist_fault_probe stop-split <timeout_s> ... before a split of the world
//   dist_fault_probe kill <timeout_s>      rank 1 kills itself (SIGKILL) before an all_reduce
// The others must end the job: the timeout's one line (stop), or mpirun's report (kill).
#include <csignal>
#include <cstdio>
#include <string>

#include "core/ops.h"
#include "dist/world.h"

namespace core = moegrad::core;
namespace dist = moegrad::dist;

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: dist_fault_probe stop|stop-a2a|stop-split|kill TIMEOUT_SECONDS\n");
    return 2;
  }
  const std::string mode = argv[1];
  dist::ProcessGroup& w = dist::world();
  dist::set_collective_timeout(std::stod(argv[2]));
  dist::set_step(12);
  auto ep = w.split(w.rank() / 2, w.rank(), "expert-parallel group " + std::to_string(w.rank() / 2));
  core::Tensor t = core::ones({4});
  w.all_reduce(t);  // everyone is up
  std::printf("rank %d: ready\n", w.rank());
  std::fflush(stdout);
  if (w.rank() == 1) std::raise(mode == "kill" ? SIGKILL : SIGSTOP);
  if (mode == "stop-split") {
    w.split(0, w.rank(), "everyone");
  } else if (mode == "stop-a2a") {
    const std::vector<std::int64_t> rows(static_cast<std::size_t>(ep->size()), 1);
    ep->all_to_all_v(core::zeros({ep->size(), 2}), rows, rows);
  } else {
    w.all_reduce(t);
  }
  std::printf("rank %d: the collective completed (it should not have)\n", w.rank());
  return 0;
}
