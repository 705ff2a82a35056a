// `moegrad eval CKPT.h5 --data FILE.h5`: a checkpoint's model over a whole file of tensors, in
// eval mode; prints the loss (and accuracy for tokens) and each MoE layer's routing statistics,
// and writes them as JSON with --output. See `moegrad eval --help`.
#pragma once

namespace moegrad::tools {
int run_eval_command(int argc, char** argv);
}  // namespace moegrad::tools
