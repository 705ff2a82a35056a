#include "train/progress.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <optional>
#include <utility>

#include "core/error.h"
#include "train/fd_io.h"
#include "train/run_lock.h"

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
  if (!r.skipped.empty())
    return fmt::format("step {}/{}  skipped (loss or gradients NaN/Inf)  lr {:.2e}  {:.1f} ms/step  ETA {}", r.step,
                       r.total, r.lr, r.ms_per_step, duration(r.eta_s));
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

namespace {
int open_append(const std::string& path, int extra_flags = 0) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | extra_flags, 0644);
  if (fd < 0) fail("metrics", "cannot open '{}' for writing: {}", path, std::strerror(errno));
  return fd;
}

// The "step" of a metrics line; nullopt for a line that is not a record with an integer step.
std::optional<std::int64_t> record_step(const std::string& line) {
  const json::Json v = json::Json::parse(line, nullptr, /*allow_exceptions=*/false);
  if (!v.is_object()) return std::nullopt;  // also a line that does not parse (discarded)
  const auto step = v.find("step");
  if (step == v.end() || !step->is_number_integer()) return std::nullopt;
  return step->get<std::int64_t>();
}

std::string read_all(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) fail("metrics", "cannot read '{}': {}", path, std::strerror(errno));
  std::string out;
  char buf[1 << 16];
  for (;;) {
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      const int e = errno;
      ::close(fd);
      fail("metrics", "cannot read '{}': {}", path, std::strerror(e));
    }
    if (n == 0) break;
    out.append(buf, static_cast<std::size_t>(n));
  }
  ::close(fd);
  return out;
}
}  // namespace

MetricsFile::MetricsFile(const std::string& path) : path_(path), fd_(open_append(path)) {
  struct stat st {};
  regular_ = ::fstat(fd_, &st) == 0 && S_ISREG(st.st_mode);
}

MetricsFile::~MetricsFile() {
  if (fd_ >= 0) ::close(fd_);
}

MetricsFile::MetricsFile(MetricsFile&& other) noexcept
    : path_(std::move(other.path_)),
      fd_(std::exchange(other.fd_, -1)),
      regular_(other.regular_),
      locked_(other.locked_),
      dropped_(other.dropped_) {}

MetricsFile& MetricsFile::operator=(MetricsFile&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0) ::close(fd_);
    path_ = std::move(other.path_);
    fd_ = std::exchange(other.fd_, -1);
    regular_ = other.regular_;
    locked_ = other.locked_;
    dropped_ = other.dropped_;
  }
  return *this;
}

void MetricsFile::lock() {
  if (!regular_) return;  // /dev/null, /dev/stderr or a pipe: nothing to protect, and shared
  // The lock must be on the file the name refers to: if another run replaced the file between
  // our open and our lock (keep_until renames), open the new one and lock that.
  for (int attempt = 0;; ++attempt) {
    lock_or_fail(fd_, path_, "the metrics file");
    struct stat mine {}, named {};
    if (::fstat(fd_, &mine) == 0 && ::stat(path_.c_str(), &named) == 0 && mine.st_dev == named.st_dev &&
        mine.st_ino == named.st_ino)
      break;
    MOEGRAD_CHECK(attempt < 10, "metrics", "'{}' keeps being replaced by another process", path_);
    ::close(fd_);
    fd_ = open_append(path_);
  }
  locked_ = true;
}

std::int64_t MetricsFile::size() const {
  if (!regular_) return 0;
  struct stat st {};
  if (::fstat(fd_, &st) != 0) fail("metrics", "cannot stat '{}': {}", path_, std::strerror(errno));
  return static_cast<std::int64_t>(st.st_size);
}

void MetricsFile::truncate() {
  if (regular_ && ::ftruncate(fd_, 0) != 0) fail("metrics", "cannot truncate '{}': {}", path_, std::strerror(errno));
}

std::int64_t MetricsFile::keep_until(std::int64_t step) {
  dropped_ = 0;
  if (!regular_) return 0;
  const std::string text = read_all(path_);
  std::string kept;
  std::int64_t dropped = 0;
  std::size_t i = 0;
  while (i < text.size()) {
    const std::size_t end = text.find('\n', i);
    if (end == std::string::npos) {  // an unfinished last line
      ++dropped;
      break;
    }
    const std::string line = text.substr(i, end - i);
    const auto s = record_step(line);
    if (s && *s > step) ++dropped;
    else kept.append(text, i, end + 1 - i);
    i = end + 1;
  }
  dropped_ = dropped;
  if (dropped == 0) return 0;
  const std::string tmp = fmt::format("{}.tmp-{}", path_, ::getpid());
  const int fd = open_append(tmp, O_TRUNC);
  try {
    if (locked_) lock_or_fail(fd, tmp, "the metrics file");
    write_fully(fd, kept.data(), kept.size(), "metrics", tmp);
    if (::fsync(fd) != 0) fail("metrics", "cannot write '{}': {}", tmp, std::strerror(errno));
    if (::rename(tmp.c_str(), path_.c_str()) != 0)
      fail("metrics", "cannot replace '{}': {}", path_, std::strerror(errno));
  } catch (...) {
    ::close(fd);
    ::unlink(tmp.c_str());
    throw;
  }
  ::close(fd_);
  fd_ = fd;
  return dropped;
}

void MetricsFile::write(const json::Json& record) { write_line(json::dump(record) + "\n"); }

void MetricsFile::write_line(const std::string& line) {
  write_fully(fd_, line.data(), line.size(), "metrics", path_);
}

}  // namespace moegrad::train
