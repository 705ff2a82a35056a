// The PyTorch reference fixtures (tests/reference/fixtures/<name>.h5, layout in
// tests/reference/README.md) and the comparisons the parity tests use.
#pragma once
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "layers/state_dict.h"
#include "train/json_read.h"

namespace moegrad::test {

struct Fixture {
  std::string name;    // file name without .h5
  std::string module;  // "lmoe.Experts", "st_moe.TopNGating", ...
  std::string mode;    // "train" or "eval"
  // The JSON attributes, as views into documents the fixture shares (copies stay valid).
  json::Node args;     // constructor arguments (root path "args" in errors)
  json::Node forward;  // forward keyword arguments ({} if none)
  json::Node loss;     // {"primary": ..., "grad_output": ..., "plus": [...]}
  json::Node inputs, draws, outputs;  // inputs_json, draws_json, outputs_json
  std::vector<std::shared_ptr<const json::Json>> documents;  // what the nodes view
  nn::StateDict model;  // /model/<key>, including buffers such as gate.threshold_train
  // Every root dataset: x, importance, grad_output, the draws, output, losses, dispatch, combine.
  std::map<std::string, core::Tensor> data;
  nn::StateDict grads;  // grad/<key> for every parameter, and "x"

  bool has(const std::string& dataset) const { return data.count(dataset) != 0; }
  // Throws "[fixture] 'lmoe_experts' has no dataset 'combine'".
  const core::Tensor& at(const std::string& dataset) const;
};

std::string fixture_dir();                 // MOEGRAD_FIXTURE_DIR
std::vector<std::string> fixture_names();  // every *.h5 there, without .h5, sorted
Fixture load_fixture(const std::string& name);

// nullopt when the shapes are equal and |a - e| <= atol + rtol * |e| for every element (a NaN
// never passes); otherwise a description: the label, the shapes, how many elements are bad,
// the worst index and both values there. Values are compared in double, any dtypes.
std::optional<std::string> compare_close(const std::string& label, const core::Tensor& actual,
                                         const core::Tensor& expected, double rtol, double atol);
// The same for exact comparisons (routing, masks): values equal after conversion to double.
std::optional<std::string> compare_equal(const std::string& label, const core::Tensor& actual,
                                         const core::Tensor& expected);

// doctest checks around the comparisons: one CHECK each, with the description on failure.
void check_close(const std::string& label, const core::Tensor& actual, const core::Tensor& expected, double rtol,
                 double atol);
void check_equal(const std::string& label, const core::Tensor& actual, const core::Tensor& expected);

}  // namespace moegrad::test
