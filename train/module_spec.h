// The seed modules by name, built from the originals' constructor arguments (JSON, under the
// originals' names) and run from named tensors: what `moegrad layer` and the reference-parity
// tests share. Names: lucidrains.{MoE, HeirarchicalMoE, Top2Gating, Experts},
// st_moe.{MoE, SparseMoEBlock, TopNGating, Expert}, zeta.{Experts, MoERouter, TopNGating}
// ("lmoe." is accepted for "lucidrains.").
#pragma once
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "layers/layers.h"
#include "train/json_read.h"

namespace moegrad::train {

using NamedTensors = std::map<std::string, core::Tensor>;
using NamedVariables = std::vector<std::pair<std::string, ag::Variable>>;

class SpecModule {
 public:
  // Throws "[layer spec] ..." for an unknown module, an unknown argument or a value of the
  // wrong kind or out of its range (sizes integers in [1, 2^24], factors finite in [0, 1e6],
  // capacity factors > 0); the error names the path in the spec ("'args.dim': ...").
  static std::unique_ptr<SpecModule> create(const std::string& module, const json::Node& args,
                                            core::TensorOptions options = {}, core::Generator* gen = nullptr);
  static std::vector<std::string> module_names();
  // Datasets a forward reads besides x: importance and the injectable draws of moe::Draws.
  static const std::vector<std::string>& input_names();

  virtual ~SpecModule() = default;
  virtual nn::Module& module() = 0;
  // Runs the forward on x (a leaf that may require grad); inputs optionally holds importance
  // and the draws; forward_args the original's forward keywords ({"noise_gates": true,
  // "noise_mult": 0.5}). Returns the outputs the original returns, by name: output, aux_loss,
  // balance_loss, router_z_loss, dispatch, combine (those the module has).
  virtual NamedVariables forward(const ag::Variable& x, const NamedTensors& inputs, const json::Node& forward_args) = 0;
  // The output the scalar loss weights with grad_output ("output", or "combine" for gates)
  // and the losses added to it: L = sum(primary * grad_output) + sum of each loss.
  virtual std::string primary() const = 0;
  virtual std::vector<std::string> losses() const = 0;
  // The datasets of input_names() this module's forward reads (a draw only where the module
  // draws it: policy_uniform with the 'random' policy, noise_uniform with noise_gates, ...).
  virtual std::vector<std::string> inputs() const = 0;
  const std::string& name() const { return name_; }

 protected:
  std::string name_;
};

// L = sum(outputs[primary] * grad_output) + the module's losses.
ag::Variable spec_loss(const SpecModule& m, const NamedVariables& outputs, const core::Tensor& grad_output);

}  // namespace moegrad::train
