// StateDict: the ordered (key, tensor) list a module exposes for checkpoints, with PyTorch's
// key names. LoadReport: what load_state_dict found while walking the module tree.
#pragma once
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include "core/tensor.h"

namespace moegrad::nn {

using core::Tensor;

class StateDict {
 public:
  using Entry = std::pair<std::string, Tensor>;

  // Appends a key; throws "[StateDict] duplicate key 'k'" if it is already there.
  void insert(std::string key, Tensor value);
  // Inserts or replaces (a replaced key keeps its position).
  void set(const std::string& key, Tensor value);
  bool contains(const std::string& key) const { return index_.count(key) != 0; }
  const Tensor* find(const std::string& key) const;  // nullptr when absent
  const Tensor& at(const std::string& key) const;    // throws "[StateDict] no key 'k'"
  std::vector<std::string> keys() const;             // insertion order

  std::size_t size() const { return entries_.size(); }
  bool empty() const { return entries_.empty(); }
  std::vector<Entry>::const_iterator begin() const { return entries_.begin(); }
  std::vector<Entry>::const_iterator end() const { return entries_.end(); }

 private:
  std::vector<Entry> entries_;
  std::unordered_map<std::string, std::size_t> index_;
};

// A fresh contiguous copy of every tensor (a state_dict's values alias the module's storage).
StateDict clone(const StateDict& sd);

// Collected by Module::load_state_dict (and the optimizer's keyed load): load(in, key, dst) once
// per key wanted: the key is then consumed, checked against dst (shape, dtype) and, when the
// whole walk found no error, copied into dst in place by apply().
class LoadReport {
 public:
  std::vector<std::string> missing_keys;     // wanted by the model, absent from the checkpoint
  std::vector<std::string> unexpected_keys;  // in the checkpoint, wanted by no module
  std::vector<std::string> shape_mismatches; // "key (checkpoint (2, 3) vs model (3, 2))"
  std::vector<std::string> dtype_mismatches; // "key (checkpoint f64 vs model f32)"

  // Looks key up in `in`: records it missing, mismatched, or plans the copy into dst.
  void load(const StateDict& in, const std::string& key, const Tensor& dst);
  // Marks a key as consumed without copying it (for hooks that read values themselves).
  void consume(const std::string& key) { used_.insert(key); }
  bool consumed(const std::string& key) const { return used_.count(key) != 0; }

  // "[load_state_dict] missing keys: a, b; unexpected keys: c; shape mismatch: d (...)",
  // listing only the categories that are errors (missing/unexpected only when strict).
  std::string message(bool strict) const;
  bool ok(bool strict) const;
  // Copies every planned (dst, src) pair (src moved to dst's device), once everything is ok.
  void apply();

 private:
  std::unordered_set<std::string> used_;
  std::vector<std::pair<Tensor, Tensor>> copies_;  // (dst, src), applied only when ok
};

}  // namespace moegrad::nn
