// `moegrad layer`: builds one seed module from a JSON spec, loads PyTorch weights from HDF5,
// runs it on tensors from HDF5 (optionally with recorded random draws and a backward pass)
// and writes the outputs and gradients to HDF5. See `moegrad layer --help` and the README.
#pragma once

namespace moegrad::tools {

// argv[0] is "layer". Returns the exit status: 0, 1 (an error, one line on stderr) or 2 (usage).
int run_layer_command(int argc, char** argv);

}  // namespace moegrad::tools
