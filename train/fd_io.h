// Writing a whole buffer to a file descriptor: the loop every writer of ours needs (metrics lines,
// checkpoint images), retrying EINTR and short writes, failing with one line naming the file.
#pragma once
#include <sys/types.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstring>
#include <string>

#include "core/error.h"

namespace moegrad::train {

// write(2), or a stand-in that injects faults (h5::write_atomically's full-disk simulation).
using WriteFn = ssize_t (*)(int fd, const void* data, std::size_t n);

// Writes all n bytes or throws "[op] cannot write '<path>': <errno text>".
inline void write_fully(int fd, const void* data, std::size_t n, const char* op, const std::string& path,
                        WriteFn write_fn = ::write) {
  const auto* p = static_cast<const unsigned char*>(data);
  while (n > 0) {
    const ssize_t got = write_fn(fd, p, n);
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) fail(op, "cannot write '{}': {}", path, got < 0 ? std::strerror(errno) : "write returned 0");
    p += got;
    n -= static_cast<std::size_t>(got);
  }
}

}  // namespace moegrad::train
