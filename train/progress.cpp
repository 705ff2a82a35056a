#include "train/progress.h"

#include <fmt/format.h>

#include "core/error.h"

namespace moegrad::train {

namespace {
std::string duration(double s) {
  if (!(s >= 0) || s > 1e7) return "?";
  const auto t = static_cast<std::int64_t>(s + 0.5);
  return t >= 3600 ? fmt::format("{}h{:02}m", t / 3600, t / 60 % 60) : fmt::format("{}m{:02}s", t / 60, t % 60);
}
}  // namespace

Progress::Progress(std::FILE* out, bool interactive, std::int64_t log_every)
    : out_(out), interactive_(interactive), log_every_(log_every) {}

std::string Progress::format(const StepReport& r) const {
  std::string s = fmt::format("step {}/{}  loss {:.5f}  aux {:.4f} (balance {:.4f}, z {:.4f})  lr {:.2e}", r.step,
                              r.total, r.loss, r.aux_loss, r.balance_loss, r.router_z_loss, r.lr);
  if (r.accuracy >= 0) s += fmt::format("  acc {:.3f}", r.accuracy);
  s += fmt::format("  {:.1f} ms/step  {:.0f} tok/s  ETA {}", r.ms_per_step, r.tokens_per_s, duration(r.eta_s));
  return s;
}

void Progress::update(const StepReport& r) {
  if (interactive_) {
    const auto now = std::chrono::steady_clock::now();
    if (r.step != r.total && now - last_draw_ < std::chrono::milliseconds(100)) return;  // redraw at most 10x/s
    last_draw_ = now;
    fmt::print(out_, "\r\033[K{}", format(r));
    line_open_ = true;
  } else if (r.step % log_every_ == 0 || r.step == r.total) {
    fmt::print(out_, "{}\n", format(r));
  }
  std::fflush(out_);
}

void Progress::message(const std::string& line) {
  if (line_open_) fmt::print(out_, "\r\033[K");
  fmt::print(out_, "{}\n", line);
  line_open_ = false;
  std::fflush(out_);
}

void Progress::finish() {
  if (line_open_) fmt::print(out_, "\n");
  line_open_ = false;
  std::fflush(out_);
}

MetricsFile::MetricsFile(const std::string& path, bool append)
    : path_(path), out_(path, append ? std::ios::app : std::ios::trunc) {
  MOEGRAD_CHECK(out_.is_open(), "metrics", "cannot open '{}' for writing", path);
}

void MetricsFile::write(const json::Json& record) {
  out_ << json::dump(record) << '\n';
  out_.flush();
  MOEGRAD_CHECK(out_.good(), "metrics", "cannot write to '{}'", path_);
}

}  // namespace moegrad::train
