// The moegrad command-line program: info, train and inspect (tools/train_command.*), eval
// (tools/eval_command.*), predict (tools/predict_command.*), generate (tools/generate_command.*), layer (tools/layer_command.*). Each subcommand parses its own flags with CLI11 (tools/cli.h).
#include <fmt/format.h>

#include <cstring>
#include <string>

#include "core/build_info.h"
#include "dist/world.h"
#include "tools/cli.h"
#include "tools/eval_command.h"
#include "tools/generate_command.h"
#include "tools/layer_command.h"
#include "tools/predict_command.h"
#include "tools/train_command.h"

namespace {

constexpr const char* kUsage = R"(usage: moegrad <command> [options]

commands:
  info       print this build's configuration (version, CUDA, BLAS, threads)
  train      train a MoE model on a synthetic task, on your own HDF5 tensors
             (--task tensors --train-data F.h5) or on text as a byte-level MoE
             transformer (--task text --text F.txt), with checkpoints and metrics
             (moegrad train --help)
  eval       a checkpoint's loss and per-layer routing statistics over an HDF5 file,
             or a language model's bits per byte over a text file
             (moegrad eval CKPT.h5 --data F.h5 | --text F.txt [--output F.json])
  predict    a checkpoint's outputs and each token's experts and weights, to HDF5
             (moegrad predict CKPT.h5 --input F.h5 --output OUT.h5)
  generate   continue a prompt with a language model (moegrad train --task text)
             (moegrad generate CKPT.h5 --prompt "..." --tokens N [--temperature T])
  inspect    print a checkpoint's configuration, step and parameter table
  layer      run one MoE module on tensors from HDF5 files: outputs, losses, gradients
             (moegrad layer --help)

options:
  -h, --help  show this help

Exit codes: 0 done, 1 an error while running, 2 a usage error (bad flag or value).
)";

int run_info(int argc, char** argv) {
  CLI::App app{"Prints this build's configuration (version, CUDA, BLAS, threads).", "moegrad info"};
  return moegrad::cli::run(app, argc, argv, [] {
    const auto info = moegrad::core::build_info();
    fmt::print("moegrad {}\n", info.version);
    fmt::print("  cuda backend : {}\n", info.cuda_built ? "built" : "not built");
    fmt::print("  cuda devices : {}\n", info.cuda_devices);
    fmt::print("  cpu blas     : {}\n", info.blas);
    fmt::print("  cpu gemm     : {}\n", info.gemm);
    fmt::print("  cpu gemm bf16: {}\n", info.gemm_bf16);
    fmt::print("  omp threads  : {}\n", info.omp_threads);
    // Without joining an MPI job: the launcher's environment tells the world size.
    fmt::print("  distributed  : MPI {}, NCCL {}, launched as {} rank(s)\n", moegrad::dist::built_with_mpi() ? "yes" : "no",
               moegrad::dist::built_with_nccl() ? "yes" : "no", moegrad::dist::launched_size());
    return 0;
  });
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2 || !std::strcmp(argv[1], "-h") || !std::strcmp(argv[1], "--help")) {
    fmt::print(argc < 2 ? stderr : stdout, "{}", kUsage);
    return argc < 2 ? 2 : 0;
  }
  const std::string command = argv[1];
  if (command == "info") return run_info(argc - 1, argv + 1);
  if (command == "layer") return moegrad::tools::run_layer_command(argc - 1, argv + 1);
  if (command == "train") return moegrad::tools::run_train_command(argc - 1, argv + 1);
  if (command == "inspect") return moegrad::tools::run_inspect_command(argc - 1, argv + 1);
  if (command == "eval") return moegrad::tools::run_eval_command(argc - 1, argv + 1);
  if (command == "predict") return moegrad::tools::run_predict_command(argc - 1, argv + 1);
  if (command == "generate") return moegrad::tools::run_generate_command(argc - 1, argv + 1);
  fmt::print(stderr, "moegrad: unknown command '{}' (commands: info, train, eval, predict, generate, inspect, layer; see moegrad --help)\n",
             command);
  return 2;
}
