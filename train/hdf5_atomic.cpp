// Files on disk around HDF5: the signature test, sealed files (a CRC-64 of the whole file in
// its user block) and atomic writes from an in-memory image. Plain POSIX I/O, no HDF5 calls.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <charconv>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "train/crc64.h"
#include "train/fd_io.h"
#include "train/hdf5.h"

namespace moegrad::h5 {

namespace {

constexpr char kSignature[8] = {'\x89', 'H', 'D', 'F', '\r', '\n', '\x1a', '\n'};
constexpr std::string_view kSealMagic = "moegrad-file-digest crc64 ";

// Closes fd on every path out of a scope.
struct Fd {
  int fd = -1;
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
};

std::string errno_text(int err) { return std::strerror(err); }

// Reads exactly n bytes at `offset`; false at end of file.
bool read_at(int fd, void* buf, std::size_t n, std::uint64_t offset, const std::string& path) {
  auto* p = static_cast<unsigned char*>(buf);
  while (n > 0) {
    const ssize_t got = ::pread(fd, p, n, static_cast<off_t>(offset));
    if (got < 0 && errno == EINTR) continue;
    if (got < 0) fail("hdf5", "cannot read '{}': {}", path, errno_text(errno));
    if (got == 0) return false;
    p += got;
    n -= static_cast<std::size_t>(got);
    offset += static_cast<std::uint64_t>(got);
  }
  return true;
}

std::string header_line(std::uint64_t crc, std::uint64_t n) { return fmt::format("{}{:016x} {}\n", kSealMagic, crc, n); }

}  // namespace

bool is_hdf5(const std::string& path) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec)) return false;
  const auto size = std::filesystem::file_size(path, ec);
  if (ec) return false;
  std::ifstream in(path, std::ios::binary);
  if (!in) return false;
  // The superblock sits at 0 or after a user block of 512, 1024, 2048, ... bytes.
  for (std::uintmax_t at = 0; at + sizeof kSignature <= size; at = at == 0 ? 512 : at * 2) {
    char buf[sizeof kSignature];
    in.seekg(static_cast<std::streamoff>(at));
    if (!in.read(buf, sizeof buf)) return false;
    if (std::memcmp(buf, kSignature, sizeof buf) == 0) return true;
  }
  return false;
}

// ---- sealed files ----------------------------------------------------------------------------

void seal_image(std::vector<unsigned char>& image) {
  MOEGRAD_CHECK(image.size() >= kSealBytes + sizeof kSignature &&
                    std::memcmp(image.data() + kSealBytes, kSignature, sizeof kSignature) == 0,
                "hdf5", "cannot seal a file image without a {}-byte user block", kSealBytes);
  const std::uint64_t n = image.size() - kSealBytes;
  const std::string line = header_line(crc64(image.data() + kSealBytes, n), n);
  std::memset(image.data(), 0, kSealBytes);
  std::memcpy(image.data(), line.data(), line.size());
}

void seal(const std::string& path) {
  Fd fd{::open(path.c_str(), O_RDWR | O_CLOEXEC)};
  if (fd.fd < 0) fail("hdf5", "cannot open '{}': {}", path, errno_text(errno));
  char sig[sizeof kSignature];
  if (!read_at(fd.fd, sig, sizeof sig, kSealBytes, path) || std::memcmp(sig, kSignature, sizeof sig) != 0)
    fail("hdf5", "cannot seal '{}': it has no {}-byte user block", path, kSealBytes);
  std::vector<unsigned char> buf(std::size_t{1} << 20);
  std::uint64_t crc = 0, n = 0;
  for (;;) {
    const ssize_t got = ::pread(fd.fd, buf.data(), buf.size(), static_cast<off_t>(kSealBytes + n));
    if (got < 0 && errno == EINTR) continue;
    if (got < 0) fail("hdf5", "cannot read '{}': {}", path, errno_text(errno));
    if (got == 0) break;
    crc = crc64(buf.data(), static_cast<std::size_t>(got), crc);
    n += static_cast<std::uint64_t>(got);
  }
  std::string block = header_line(crc, n);
  block.resize(kSealBytes, '\0');
  if (::pwrite(fd.fd, block.data(), block.size(), 0) != static_cast<ssize_t>(block.size()))
    fail("hdf5", "cannot write '{}': {}", path, errno_text(errno));
}

Seal verify_seal(const std::string& path) {
  Fd fd{::open(path.c_str(), O_RDONLY | O_CLOEXEC)};
  if (fd.fd < 0) fail("hdf5", "cannot open '{}': {}", path, errno_text(errno));
  struct stat st {};
  if (::fstat(fd.fd, &st) != 0) fail("hdf5", "cannot stat '{}': {}", path, errno_text(errno));
  const auto size = static_cast<std::uint64_t>(st.st_size);
  char head[kSealBytes];
  if (size < kSealBytes || !read_at(fd.fd, head, kSealBytes, 0, path)) return Seal::absent;
  if (std::string_view(head, kSealMagic.size()) != kSealMagic) {
    // No user block (HDF5's signature at 0) or one never written (zeros): not sealed. Anything
    // else in front of HDF5's signature at 512 is a header that was damaged.
    const bool no_block = std::memcmp(head, kSignature, sizeof kSignature) == 0;
    const bool zeros = std::all_of(head, head + kSealBytes, [](char c) { return c == '\0'; });
    if (no_block || zeros) return Seal::absent;
    fail("hdf5", "'{}': the file checksum header in its first {} bytes is damaged", path, kSealBytes);
  }
  // "<16 hex> <decimal>\n", nothing else.
  const char* p = head + kSealMagic.size();
  const char* end = head + kSealBytes;
  std::uint64_t stored = 0, count = 0;
  auto [q, e1] = std::from_chars(p, end, stored, 16);
  bool ok = e1 == std::errc() && q - p == 16 && q < end && *q == ' ';
  const char* r = q;
  if (ok) {
    auto [rr, e2] = std::from_chars(q + 1, end, count, 10);
    ok = e2 == std::errc() && rr > q + 1 && rr < end && *rr == '\n';
    r = rr;
  }
  if (ok) {
    for (const char* z = r + 1; z < end; ++z) ok = ok && *z == '\0';
  }
  if (!ok) fail("hdf5", "'{}': the file checksum header in its first {} bytes is damaged", path, kSealBytes);
  if (count != size - kSealBytes)
    fail("hdf5", "'{}': the file holds {} bytes after its header, which says {} ({})", path, size - kSealBytes, count,
         size - kSealBytes < count ? "truncated" : "bytes were appended");
  std::vector<unsigned char> buf(std::size_t{1} << 20);
  std::uint64_t crc = 0;
  for (std::uint64_t at = kSealBytes; at < size;) {
    const std::size_t n = static_cast<std::size_t>(std::min<std::uint64_t>(buf.size(), size - at));
    if (!read_at(fd.fd, buf.data(), n, at, path)) fail("hdf5", "'{}': the file shrank while being read", path);
    crc = crc64(buf.data(), n, crc);
    at += n;
  }
  if (crc != stored)
    throw ChecksumError(fmt::format("[hdf5] '{}': checksum mismatch over the file (crc64 {:016x}, stored {:016x}): the "
                                    "file is corrupted",
                                    path, crc, stored),
                        "/");
  return Seal::verified;
}

// ---- atomic writes ---------------------------------------------------------------------------

namespace {

void fsync_path(const std::string& path, bool directory) {
  Fd fd{::open(path.c_str(), O_RDONLY | O_CLOEXEC | (directory ? O_DIRECTORY : 0))};
  if (fd.fd < 0) fail("hdf5", "cannot open '{}' to fsync it: {}", path, errno_text(errno));
  if (::fsync(fd.fd) != 0) fail("hdf5", "cannot fsync '{}': {}", path, errno_text(errno));
}

// Creates (exclusively) and returns a new empty file ".<name>.tmp-<pid>-<n>" beside target.
std::string create_temporary(const std::filesystem::path& dir, const std::string& name) {
  static std::atomic<unsigned> counter{0};
  for (int attempt = 0; attempt < 100; ++attempt) {
    const std::string tmp = (dir / fmt::format(".{}.tmp-{}-{}", name, ::getpid(), counter++)).string();
    const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    if (fd >= 0) {
      ::close(fd);
      return tmp;
    }
    if (errno != EEXIST)
      fail("hdf5", "cannot write '{}': cannot create its temporary file in '{}': {}", (dir / name).string(),
           dir.string(), errno_text(errno));
  }
  fail("hdf5", "cannot create a temporary file for '{}' in '{}'", name, dir.string());
}

// MOEGRAD_FAULT_WRITE_FAIL_AFTER_BYTES=N: this process's writes here fail with ENOSPC once N
// bytes in all have been written (counted from when the variable last changed), as on a disk
// that fills up. Read at every file, so that a test can set it between saves.
class WriteFault {
 public:
  // How many more bytes may be written; -1 when no fault is set.
  std::int64_t budget() {
    std::lock_guard<std::mutex> lock(mutex_);
    const char* v = std::getenv("MOEGRAD_FAULT_WRITE_FAIL_AFTER_BYTES");
    const std::string value = v ? v : "";
    if (value != value_) {
      value_ = value;
      written_ = 0;
      limit_ = -1;
      std::int64_t n = -1;
      const auto [p, ec] = std::from_chars(value.data(), value.data() + value.size(), n);
      if (!value.empty() && ec == std::errc() && p == value.data() + value.size() && n >= 0) limit_ = n;
    }
    return limit_ < 0 ? -1 : std::max<std::int64_t>(0, limit_ - written_);
  }
  void wrote(std::int64_t n) {
    std::lock_guard<std::mutex> lock(mutex_);
    written_ += n;
  }

 private:
  std::mutex mutex_;
  std::string value_;
  std::int64_t limit_ = -1, written_ = 0;
};

WriteFault& write_fault() {
  static WriteFault f;
  return f;
}

// write(2) with the fault injection above.
ssize_t write_some(int fd, const void* p, std::size_t n) {
  const std::int64_t budget = write_fault().budget();
  if (budget == 0) {
    errno = ENOSPC;
    return -1;
  }
  if (budget > 0) n = std::min<std::size_t>(n, static_cast<std::size_t>(budget));
  const ssize_t got = ::write(fd, p, n);
  if (got > 0) write_fault().wrote(got);
  return got;
}

// Writes the bytes to `tmp` (an existing empty file), fsyncs and closes it; errors name `path`.
void write_file(const std::string& tmp, const std::string& path, const std::vector<unsigned char>& bytes) {
  Fd fd{::open(tmp.c_str(), O_WRONLY | O_TRUNC | O_CLOEXEC)};
  if (fd.fd < 0) fail("hdf5", "cannot write '{}': {}", path, errno_text(errno));
  train::write_fully(fd.fd, bytes.data(), bytes.size(), "hdf5", path, write_some);
  if (::fsync(fd.fd) != 0) fail("hdf5", "cannot write '{}': fsync failed: {}", path, errno_text(errno));
  const int raw = std::exchange(fd.fd, -1);
  if (::close(raw) != 0) fail("hdf5", "cannot write '{}': close failed: {}", path, errno_text(errno));
}

}  // namespace

void write_atomically(const std::string& path, const std::function<void(File&)>& fill) {
  namespace fs = std::filesystem;
  const fs::path target(path);
  const std::string name = target.filename().string();
  MOEGRAD_CHECK(!name.empty() && name != "." && name != "..", "hdf5", "'{}' is not a file name", path);
  const fs::path dir = target.has_parent_path() ? target.parent_path() : fs::path(".");
  const std::string tmp = create_temporary(dir, name);
  try {
    std::vector<unsigned char> image;
    {
      File f = File::create_in_memory(tmp, kSealBytes);
      fill(f);
      image = f.image();
      f.close();
    }
    seal_image(image);
    write_file(tmp, path, image);
    if (std::rename(tmp.c_str(), path.c_str()) != 0)
      fail("hdf5", "cannot rename '{}' to '{}': {}", tmp, path, errno_text(errno));
  } catch (...) {
    std::error_code ec;
    fs::remove(tmp, ec);
    throw;
  }
  fsync_path(dir.string(), true);
}

}  // namespace moegrad::h5
