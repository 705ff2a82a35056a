#include "tools/eval_command.h"

#include <fcntl.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>

#include "core/error.h"
#include "tools/cli.h"
#include "train/fd_io.h"
#include "train/inference.h"

namespace moegrad::tools {

namespace {
// Writes text to path through a temporary file in the same folder and a rename, so a reader
// sees the old file or the whole new one.
void write_text_atomically(const std::string& path, const std::string& text) {
  const std::string tmp = path + ".tmp-" + std::to_string(::getpid());
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
  if (fd < 0) fail("eval", "cannot write '{}': {}", path, std::strerror(errno));
  try {
    train::write_fully(fd, text.data(), text.size(), "eval", path);
    if (::fsync(fd) != 0) fail("eval", "cannot write '{}': {}", path, std::strerror(errno));
  } catch (...) {
    ::close(fd);
    ::unlink(tmp.c_str());
    throw;
  }
  ::close(fd);
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) {
    ::unlink(tmp.c_str());
    fail("eval", "cannot write '{}': {}", path, ec.message());
  }
}
}  // namespace

int run_eval_command(int argc, char** argv) {
  CLI::App app{"Runs a checkpoint's model over a whole HDF5 file in eval mode (batches in file order) and prints the "
               "loss (mean squared error for regression; cross-entropy and accuracy for tokens) and each MoE layer's "
               "routing statistics: kept choices per expert, dropped fraction, dead experts, max load / mean. The file "
               "is laid out as `moegrad train --task tensors` reads it: x and y, or tokens (and targets).",
               "moegrad eval"};
  app.footer("Errors print one line \"moegrad eval: <message>\": exit 2 for a usage error, 1 for an error while running "
             "(a bad checkpoint or data file, a file that does not fit the model).");
  std::string ckpt, data, output;
  std::int64_t batch = 0;
  app.add_option("CKPT.h5", ckpt, "the checkpoint (moegrad train --ckpt-dir)")->required();
  app.add_option("--data", data, "the HDF5 file to evaluate on")->required()->type_name("FILE.h5");
  app.add_option("--output", output, "also write the figures as JSON")->type_name("FILE.json");
  cli::add_integer(app, "--batch-size", batch, 0, std::int64_t{1} << 40,
                   "rows per batch; 0 = the checkpoint's --batch-size");
  return cli::run(app, argc, argv, [&] {
    train::InferenceModel m(ckpt);
    const auto d = train::load_tensor_data(data, "--data");
    m.check_fits(*d, "--data");
    const train::OrderedTensors batches(d, batch > 0 ? batch : m.config().batch_size);
    const train::FileEvaluation r = train::evaluate_file(m, batches);
    fmt::print("{}\n", r.to_text());
    if (!output.empty()) {
      write_text_atomically(output, json::dump(r.to_json()) + "\n");
      fmt::print("wrote {}\n", output);
    }
    return 0;
  });
}

}  // namespace moegrad::tools
