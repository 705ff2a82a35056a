// `moegrad predict CKPT.h5 --input FILE.h5 --output OUT.h5`: a checkpoint's model over a file of
// inputs; writes its outputs and, per MoE layer, each token's experts and weights. See
// `moegrad predict --help`.
#pragma once

namespace moegrad::tools {
int run_predict_command(int argc, char** argv);
}  // namespace moegrad::tools
