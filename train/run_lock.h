// One run per checkpoint folder and per metrics file: an exclusive flock(2) taken before a run
// reads or changes anything there and held until it ends. The kernel releases a flock when its
// last descriptor closes, so a run that crashes or is killed (SIGKILL included) leaves no stale
// lock behind. A folder is locked through a descriptor on the folder itself, so no lock file is
// left among the checkpoints. The holder's PID, for the message, comes from /proc/locks.
//   [train] the checkpoint folder 'runs/moe/ckpt' is in use by another run (process 4242): one run per folder
#pragma once
#include <sys/types.h>

#include <string>

namespace moegrad::train {

// Takes an exclusive, non-blocking flock on fd or throws the message above; `what` names the
// thing ("the checkpoint folder", "the metrics file").
void lock_or_fail(int fd, const std::string& path, const std::string& what);

// The PID of the process holding a flock on the file fd refers to (from /proc/locks), 0 when
// it cannot be told.
pid_t flock_holder(int fd);

// An exclusive lock on a folder (created with its parents when missing), held while it lives.
class FolderLock {
 public:
  explicit FolderLock(const std::string& dir, const std::string& what = "the checkpoint folder");
  ~FolderLock();
  FolderLock(const FolderLock&) = delete;
  FolderLock& operator=(const FolderLock&) = delete;
  const std::string& dir() const { return dir_; }

 private:
  std::string dir_;
  int fd_ = -1;
};

}  // namespace moegrad::train
