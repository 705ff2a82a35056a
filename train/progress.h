// What a training run shows and records: one line redrawn in place on a terminal (or plain
// lines every --log-every steps otherwise), and metrics as JSON lines.
#pragma once
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <string>

#include "train/json_read.h"

namespace moegrad::train {

struct StepReport {
  std::int64_t step = 0, total = 0;  // step: updates done (1-based)
  double loss = 0, aux_loss = 0, balance_loss = 0, router_z_loss = 0, lr = 0;
  double ms_per_step = 0, tokens_per_s = 0, eta_s = 0;
  double accuracy = -1;
  std::string skipped;  // --skip-nonfinite: why the step was skipped ("" = it was taken)
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

// Appends one JSON object per line. Each line is formatted whole and written by one write(2)
// on a descriptor opened O_APPEND, so a crash loses nothing written and concurrent writers can
// never interleave parts of lines (no "{{", no lost lines).
class MetricsFile {
 public:
  MetricsFile() = default;
  // Opens (creating) path for appending. Nothing is truncated here: see truncate, keep_until.
  explicit MetricsFile(const std::string& path);
  ~MetricsFile();
  MetricsFile(MetricsFile&& other) noexcept;
  MetricsFile& operator=(MetricsFile&& other) noexcept;
  MetricsFile(const MetricsFile&) = delete;
  MetricsFile& operator=(const MetricsFile&) = delete;

  bool is_open() const { return fd_ >= 0; }
  const std::string& path() const { return path_; }
  // Takes the file's run lock (run_lock.h) or throws naming the process that holds it. Files
  // that are not regular files (/dev/null, a pipe) are neither locked, truncated nor rewritten.
  void lock();
  std::int64_t size() const;  // bytes in the file now
  void truncate();            // a fresh run with --overwrite
  // A resumed run continues after `step`: keeps the records of steps <= step (and complete
  // lines without a step) and drops the others and an unfinished last line. When something is
  // dropped, the kept lines go to a new file that replaces the old one (written, fsynced,
  // renamed, and locked before it takes the old one's name), so a crash leaves one or the
  // other. Returns the number of lines dropped.
  std::int64_t keep_until(std::int64_t step);
  std::int64_t dropped() const { return dropped_; }  // by the last keep_until
  void write(const json::Json& record);
  void write_line(const std::string& line);  // line ends with '\n'; one write(2), retried on EINTR

 private:
  std::string path_;
  int fd_ = -1;
  bool regular_ = false;  // a regular file; others (/dev/null, a pipe) are only appended to
  bool locked_ = false;
  std::int64_t dropped_ = 0;
};

}  // namespace moegrad::train
