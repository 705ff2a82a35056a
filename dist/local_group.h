// The group of one process: a program started without mpirun, or a split that leaves a rank
// alone. Every collective is the identity (results are fresh copies where the interface returns
// a tensor, so callers never alias their input).
#pragma once
#include "dist/process_group.h"

namespace moegrad::dist {

class LocalGroup final : public ProcessGroup {
 public:
  // world_rank: this process's rank in the world (0 when alone); label: for describe().
  explicit LocalGroup(std::string label, int world_rank = 0);

  int rank() const override { return 0; }
  int size() const override { return 1; }
  const std::vector<int>& world_ranks() const override { return world_ranks_; }
  std::string describe() const override;
  std::shared_ptr<ProcessGroup> split(int color, int key, const std::string& label) override;

  void all_reduce(Tensor& t, Reduction op) override;
  Tensor all_gather(const Tensor& t) override;
  Tensor all_to_all_v(const Tensor& t, std::span<const std::int64_t> send_rows,
                      std::span<const std::int64_t> recv_rows) override;
  void broadcast(Tensor& t, int root) override;
  void barrier() override {}

 private:
  std::string label_;
  std::vector<int> world_ranks_;
};

}  // namespace moegrad::dist
