#include "train/run_lock.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "core/error.h"

namespace moegrad::train {

pid_t flock_holder(int fd) {
  struct stat st {};
  if (::fstat(fd, &st) != 0) return 0;
  // "1: FLOCK  ADVISORY  WRITE 4242 fe:00:10953386 0 EOF"; waiters read "1: -> FLOCK ...".
  // The device is "major:minor" in hex; the inode alone is the fallback for file systems
  // (overlays) whose st_dev differs from the device the lock is recorded on.
  std::ifstream in("/proc/locks");
  pid_t by_inode = 0;
  for (std::string line; std::getline(in, line);) {
    std::istringstream ls(line);
    std::string index, kind, mode, access, id;
    long long pid = 0;
    ls >> index >> kind;
    if (kind == "->") continue;
    if (kind != "FLOCK" || !(ls >> mode >> access >> pid >> id)) continue;
    unsigned major_id = 0, minor_id = 0;
    unsigned long long inode = 0;
    if (std::sscanf(id.c_str(), "%x:%x:%llu", &major_id, &minor_id, &inode) != 3 || inode != st.st_ino) continue;
    if (major_id == major(st.st_dev) && minor_id == minor(st.st_dev)) return static_cast<pid_t>(pid);
    if (by_inode == 0) by_inode = static_cast<pid_t>(pid);
  }
  return by_inode;
}

void lock_or_fail(int fd, const std::string& path, const std::string& what) {
  int rc = 0;
  do {
    rc = ::flock(fd, LOCK_EX | LOCK_NB);
  } while (rc != 0 && errno == EINTR);
  if (rc == 0) return;
  if (errno != EWOULDBLOCK) fail("train", "cannot lock {} '{}': {}", what, path, std::strerror(errno));
  const pid_t holder = flock_holder(fd);
  const std::string who = holder > 0 ? fmt::format("process {}", holder) : std::string("another process");
  fail("train", "{} '{}' is in use by another run ({}): one run per {}", what, path, who,
       what.find("folder") != std::string::npos ? "folder" : "file");
}

FolderLock::FolderLock(const std::string& dir, const std::string& what) : dir_(dir) {
  std::error_code ec;
  std::filesystem::create_directories(dir_, ec);
  if (ec) fail("train", "cannot create {} '{}': {}", what, dir_, ec.message());
  fd_ = ::open(dir_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd_ < 0) fail("train", "cannot open {} '{}': {}", what, dir_, std::strerror(errno));
  try {
    lock_or_fail(fd_, dir_, what);
  } catch (...) {
    ::close(fd_);
    throw;
  }
}

FolderLock::~FolderLock() {
  if (fd_ >= 0) ::close(fd_);  // releases the lock
}

}  // namespace moegrad::train
