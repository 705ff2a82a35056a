#include "layers/moe/moe_layer.h"

#include "core/error.h"

namespace moegrad::nn::moe {

void MoELayer::place_experts(std::shared_ptr<dist::ProcessGroup> group) {
  const char* op = op_name();
  MOEGRAD_CHECK(group != nullptr, op, "place_experts needs a process group");
  const std::int64_t X = total_experts(), P = group->size();
  if (placement_.group != nullptr)
    fail(op, "experts are already placed over {}; place_experts runs once per layer", placement_.group->describe());
  if (P < 1 || X % P != 0)
    fail(op, "cannot place {} experts over the {} ranks of {}: the expert-parallel size must divide the expert count",
         X, P, group->describe());
  const std::int64_t count = X / P, first = group->rank() * count;
  if (count != X) keep_experts(first, count);
  placement_ = {std::move(group), X, first, count};
}

std::vector<std::pair<std::string, std::shared_ptr<MoELayer>>> moe_layers(const std::shared_ptr<Module>& root) {
  std::vector<std::pair<std::string, std::shared_ptr<MoELayer>>> out;
  if (auto self = std::dynamic_pointer_cast<MoELayer>(root)) out.emplace_back("", std::move(self));
  for (const auto& [path, m] : root->named_modules())
    if (auto layer = std::dynamic_pointer_cast<MoELayer>(m)) out.emplace_back(path, std::move(layer));
  return out;
}

}  // namespace moegrad::nn::moe
