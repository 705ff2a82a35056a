// What a training run shows and records: one line redrawn in place on a terminal (or plain
// lines every --log-every steps otherwise), and metrics as JSON lines.
#pragma once
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <string>

#include "train/json_read.h"

namespace moegrad::train {

struct StepReport {
  std::int64_t step = 0, total = 0;  // step: updates done (1-based)
  double loss = 0, aux_loss = 0, balance_loss = 0, router_z_loss = 0, lr = 0;
  double ms_per_step = 0, tokens_per_s = 0, eta_s = 0;
  double accuracy = -1;
};

class Progress {
 public:
  // interactive: redraw one line (stderr is a terminal and progress was asked for).
  Progress(std::FILE* out, bool interactive, std::int64_t log_every);
  void update(const StepReport& r);       // every step
  void message(const std::string& line);  // a line of its own (evaluation, checkpoint)
  void finish();                          // ends the redrawn line

 private:
  std::string format(const StepReport& r) const;
  std::FILE* out_;
  bool interactive_;
  std::int64_t log_every_;
  bool line_open_ = false;
  std::chrono::steady_clock::time_point last_draw_{};
};

// Appends one JSON object per line; flushed after each so a crash loses nothing written.
class MetricsFile {
 public:
  MetricsFile() = default;
  explicit MetricsFile(const std::string& path, bool append);
  bool is_open() const { return out_.is_open(); }
  void write(const json::Json& record);
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  std::ofstream out_;
};

}  // namespace moegrad::train
