// `moegrad train` (train a model on a synthetic task, with checkpoints and metrics) and
// `moegrad inspect CKPT.h5` (a checkpoint's configuration, step and parameter table).
#pragma once

namespace moegrad::tools {
int run_train_command(int argc, char** argv);
int run_inspect_command(int argc, char** argv);
}  // namespace moegrad::tools
