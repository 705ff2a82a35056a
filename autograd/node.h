// A recorded op: its inputs (edges) and its backward closure, written beside the forward
// in autograd/functions/. Every node has exactly one output.
#pragma once
#include <functional>
#include <initializer_list>
#include <vector>

#include "autograd/variable.h"

namespace moegrad::ag {

// need[i]: whether input i wants a gradient; a backward returns an undefined tensor for the rest.
using Needs = std::vector<bool>;
using Grads = std::vector<Tensor>;
// grad_output is handed over by value: when grad_output.owns_whole_storage() inside the closure,
// no one else sees that buffer and the closure may write its result into it (reusable_buffer).
using BackwardFn = std::function<Grads(Tensor grad_output, const Needs& need)>;

// grad_output itself when the backward may overwrite it (sole owner, contiguous, whole
// storage), else an undefined tensor: pass it as an op's `out` to compute a gradient in place.
inline Tensor reusable_buffer(const Tensor& grad_output) {
  return grad_output.owns_whole_storage() ? grad_output : Tensor{};
}

struct Edge {
  std::shared_ptr<Node> node;          // non-leaf input: where its gradient goes next
  std::shared_ptr<VariableImpl> leaf;  // leaf input that requires grad: accumulate here
  Shape shape;                         // input shape (broadcast gradients are summed to it)
  DType dtype = DType::f32;
  bool wants_grad() const { return node || leaf; }
};

struct Node {
  const char* name;
  std::vector<Edge> inputs;
  BackwardFn backward;  // reset after it has run: saved tensors are freed with it

  Node() = default;
  Node(const Node&) = delete;
  Node& operator=(const Node&) = delete;
  ~Node();  // iterative, so dropping a 100k-op chain does not recurse
};

// Records y = op(inputs) with its backward. Returns a constant when grad mode is off or no
// input requires grad (the closure is then dropped unused).
Variable record(const char* name, Tensor value, std::initializer_list<Variable> inputs,
                BackwardFn backward);
Variable record(const char* name, Tensor value, const std::vector<Variable>& inputs,
                BackwardFn backward);

// True when any input requires grad and grad mode is on: ops may skip saving tensors otherwise.
bool any_requires_grad(std::initializer_list<Variable> inputs);

}  // namespace moegrad::ag
