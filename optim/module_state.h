// An optimizer's state under its module's state_dict keys and shapes: PyTorch's names, so a
// checkpoint's /optimizer lines up with its /model and a torch.optim optimizer can be restored
// from it (README, "Optimizer state in PyTorch"). The mapping is the module's own
// (Module::state_entries), the one state_dict uses, so stacked expert weights give per-expert
// keys here too:
//   "<key>/<slot>"  the slot's view for that key: "experts.experts.3.net.0.weight/exp_avg"
//                   [2h, d] is slice 3 of the stacked exp_avg of "experts.w_in" [E, 2h, d]
//   "<key>/step"    0-d f32, as torch.optim.Adam/AdamW (1.13) keep `step`: the updates of the
//                   parameter the key belongs to (every slice of a stacked parameter has its
//                   count); f64 above 2^24, where f32 is no longer exact. SGD has it too.
//   "step_count"    0-d i64: step() calls (moegrad's; PyTorch has none)
// Parameters only (buffers have no state); a tied parameter appears under its first key
// (named_parameters' name), as PyTorch lists it once. A parameter of the module that the
// optimizer does not hold has no keys.
#pragma once
#include <string>
#include <vector>

#include "layers/module.h"
#include "optim/optimizer.h"

namespace moegrad::optim {

// opt.state_dict() under module's keys; the slot tensors are views of the optimizer's state.
nn::StateDict module_state_dict(const Optimizer& opt, const nn::Module& module);
// The reverse: checks every key first, strictly, and copies nothing unless all are right. One
// error names every missing, unexpected or mis-shaped key and every invalid or inconsistent
// step, by the module's keys:
//   [AdamW] optimizer state: missing keys: w/exp_avg_sq; unexpected keys: v/exp_avg
void load_module_state_dict(Optimizer& opt, const nn::Module& module, const nn::StateDict& state);

// The conversions behind them, on Optimizer::state_dict()'s form ("<parameter name>/<slot>",
// "<parameter name>/step", "step_count"), for state held outside an optimizer (train/parallel:
// expert slots gathered over ranks into the shapes of an unsharded twin module).
// to_module_keys: every "<name>/..." of `internal` must belong to a parameter of module with
// the parameter's shape; op names the optimizer in errors.
nn::StateDict to_module_keys(const nn::StateDict& internal, const nn::Module& module, const std::string& op);
// from_module_keys: the state of the parameters `names` (named_parameters names of module) with
// `slots`, in module's parameter shapes, on the host.
nn::StateDict from_module_keys(const nn::StateDict& keyed, const nn::Module& module, const std::vector<std::string>& names,
                               const std::vector<std::string>& slots, const std::string& op);

}  // namespace moegrad::optim
