// The backward engine: an explicit-stack walk (no recursion, so 100k-op chains are fine),
// dependency counts, gradient accumulation, broadcast reduction in one place, and freeing of
// each node's saved tensors once it has run.
#include <unordered_map>

#include "autograd/node.h"

namespace moegrad::ag {
namespace {

// The first gradient is taken over when nothing else holds its storage (as PyTorch's
// AccumulateGrad steals it): a weight-sized gradient is then never copied. Otherwise it is
// cloned so that .grad never aliases a gradient flowing elsewhere.
void accumulate_leaf(VariableImpl& leaf, Tensor g) {
  if (!leaf.grad.defined())
    leaf.grad = g.owns_whole_storage() ? std::move(g) : core::clone(g);
  else
    core::add_(leaf.grad, g);
}

// Brings an incoming gradient to the input's shape and dtype.
Tensor fit_to_input(const Node& node, const Edge& e, Tensor g) {
  if (g.shape() != e.shape) {
    MOEGRAD_CHECK(g.dim() >= static_cast<std::int64_t>(e.shape.size()), "backward",
                  "op {} returned a gradient of shape {} for an input of shape {}", node.name,
                  core::shape_str(g.shape()), core::shape_str(e.shape));
    g = core::sum_to_shape(g, e.shape);
  }
  MOEGRAD_CHECK(g.dtype() == e.dtype, "backward", "op {} returned a {} gradient for a {} input",
                node.name, core::describe(g), core::dtype_name(e.dtype));
  return g;
}

}  // namespace

void Variable::backward(const Tensor& grad) const {
  MOEGRAD_CHECK(defined(), "backward", "variable is undefined");
  MOEGRAD_CHECK(requires_grad(), "backward",
                "{} does not require grad: no input of it requires grad (or it was computed under NoGradGuard)",
                core::describe(value()));
  Tensor seed = grad;
  if (!seed.defined()) {
    MOEGRAD_CHECK(numel() == 1, "backward",
                  "implicit gradient only for scalar outputs; output is {}: pass a gradient", core::describe(value()));
    seed = core::ones_like(value());
  } else {
    MOEGRAD_CHECK(seed.shape() == shape() && seed.dtype() == dtype(), "backward",
                  "gradient {} does not match output {}", core::describe(seed), core::describe(value()));
  }
  if (is_leaf()) {
    accumulate_leaf(*impl(), seed);
    return;
  }

  // 1. Dependency counts over the reachable graph.
  std::unordered_map<Node*, int> deps;
  std::vector<Node*> stack{grad_fn().get()};
  deps[grad_fn().get()] = 0;
  while (!stack.empty()) {
    Node* n = stack.back();
    stack.pop_back();
    MOEGRAD_CHECK(n->backward, "backward",
                  "the graph through op {} was already freed by an earlier backward", n->name);
    for (const Edge& e : n->inputs) {
      if (!e.node) continue;
      auto [it, inserted] = deps.try_emplace(e.node.get(), 0);
      ++it->second;
      if (inserted) stack.push_back(e.node.get());
    }
  }

  // 2. Run nodes whose consumers have all contributed.
  std::unordered_map<Node*, Tensor> pending;
  pending[grad_fn().get()] = seed;
  std::vector<Node*> ready{grad_fn().get()};
  while (!ready.empty()) {
    Node* n = ready.back();
    ready.pop_back();
    Tensor g;
    if (auto it = pending.find(n); it != pending.end()) {
      g = std::move(it->second);
      pending.erase(it);
    }
    Grads grads;
    if (g.defined()) {
      Needs need(n->inputs.size());
      for (std::size_t i = 0; i < need.size(); ++i) need[i] = n->inputs[i].wants_grad();
      grads = n->backward(std::move(g), need);  // the closure may reuse g's buffer
      MOEGRAD_CHECK(grads.size() == n->inputs.size(), "backward", "op {} returned {} gradients for {} inputs",
                    n->name, grads.size(), n->inputs.size());
      if (anomaly_mode_enabled())
        for (std::size_t i = 0; i < grads.size(); ++i)
          if (!core::all_finite(grads[i]))
            fail("anomaly", "backward of '{}' produced NaN/Inf in the gradient of input {}: {}", n->name, i,
                 core::describe(grads[i]));
    }
    n->backward = nullptr;  // frees the tensors the closure saved
    for (std::size_t i = 0; i < n->inputs.size(); ++i) {
      const Edge& e = n->inputs[i];
      if (!e.wants_grad()) continue;
      Tensor gi = i < grads.size() ? std::move(grads[i]) : Tensor{};
      if (gi.defined()) gi = fit_to_input(*n, e, std::move(gi));
      if (e.leaf) {
        if (gi.defined()) accumulate_leaf(*e.leaf, std::move(gi));
        continue;
      }
      Node* next = e.node.get();
      if (gi.defined()) {
        auto [it, inserted] = pending.try_emplace(next, std::move(gi));  // gi is left intact if present
        if (!inserted) {  // a second consumer's gradient: sum in place when the first is ours alone
          if (it->second.owns_whole_storage())
            core::add_(it->second, gi);
          else
            it->second = core::add(it->second, gi);
        }
      }
      if (--deps[next] == 0) ready.push_back(next);
    }
  }
}

}  // namespace moegrad::ag

namespace moegrad::ag {

Node::~Node() {
  std::vector<std::shared_ptr<Node>> stack;
  for (auto& e : inputs)
    if (e.node) stack.push_back(std::move(e.node));
  while (!stack.empty()) {
    std::shared_ptr<Node> n = std::move(stack.back());
    stack.pop_back();
    if (n.use_count() == 1)  // last owner: take its inputs before it dies
      for (auto& e : n->inputs)
        if (e.node) stack.push_back(std::move(e.node));
  }
}

}  // namespace moegrad::ag
