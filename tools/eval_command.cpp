#include "tools/eval_command.h"

#include <fcntl.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>

#include "core/error.h"
#include "tools/cli.h"
#include "train/fd_io.h"
#include "train/inference.h"
#include "train/text_evaluation.h"

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
  CLI::App app{"Runs a checkpoint's model over a whole file in eval mode and prints the loss and each MoE layer's "
               "routing statistics: kept choices per expert, dropped fraction, dead experts, max load / mean. --data: "
               "an HDF5 file laid out as `moegrad train --task tensors` reads it (x and y, or tokens and targets), in "
               "batches in file order; the loss is the mean squared error for regression, cross-entropy and accuracy "
               "for tokens. --text: a text file for a language model (a checkpoint of --task text), in consecutive "
               "windows of the checkpoint's --seq-len so that every byte but the first is predicted once; the loss "
               "is the mean cross-entropy per byte, also as bits per byte (loss / ln 2) like the trainer's eval.",
               "moegrad eval"};
  app.footer("When --seq-len does not divide the text's size - 1, its last r bytes are predicted by one more window, "
             "the file's last --seq-len + 1 bytes, counting only its last r positions.\n"
             "Errors print one line \"moegrad eval: <message>\": exit 2 for a usage error, 1 for an error while running "
             "(a bad checkpoint or data file, a file that does not fit the model, a text shorter than one window).");
  std::string ckpt, data, text, output;
  std::int64_t batch = 0;
  app.add_option("CKPT.h5", ckpt, "the checkpoint (moegrad train --ckpt-dir)")->required();
  auto* data_opt = app.add_option("--data", data, "the HDF5 file to evaluate on")->type_name("FILE.h5");
  auto* text_opt = app.add_option("--text", text, "the text file to evaluate a language model on")->type_name("FILE");
  data_opt->excludes(text_opt);
  app.add_option("--output", output, "also write the figures as JSON")->type_name("FILE.json");
  cli::add_integer(app, "--batch-size", batch, 0, std::int64_t{1} << 40,
                   "rows (--text: windows) per batch; 0 = the checkpoint's --batch-size");
  return cli::run(app, argc, argv, [&] {
    if (data.empty() && text.empty())
      throw cli::UsageError("needs --data FILE.h5 (a model of tensors) or --text FILE (a language model)");
    train::InferenceModel m(ckpt);
    const std::int64_t b = batch > 0 ? batch : m.config().batch_size;
    std::string printed;
    json::Json written;
    if (!text.empty()) {
      const train::TextEvaluation r = train::evaluate_text(m, train::load_text(text, "--text"), b);
      printed = r.to_text();
      written = r.to_json();
    } else {
      if (m.config().task == "text")
        fail("eval", "checkpoint '{}' is a language model (--task text): evaluate it on a text file with --text FILE, "
             "not --data", ckpt);
      const auto d = train::load_tensor_data(data, "--data");
      m.check_fits(*d, "--data");
      const train::FileEvaluation r = train::evaluate_file(m, train::OrderedTensors(d, b));
      printed = r.to_text();
      written = r.to_json();
    }
    fmt::print("{}\n", printed);
    if (!output.empty()) {
      write_text_atomically(output, json::dump(written) + "\n");
      fmt::print("wrote {}\n", output);
    }
    return 0;
  });
}

}  // namespace moegrad::tools
