// Files for tests: a fresh temporary folder per test, reading and damaging a file on purpose,
// whether Debian's h5py is there for the layout checks, and the message an error carries.
#pragma once
#include <doctest/doctest.h>
#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <system_error>
#include <vector>

#include "core/error.h"

namespace moegrad::test {

struct TempDir {
  std::filesystem::path path;

  TempDir() {
    static int counter = 0;  // one sequence for the whole test binary (inline: one instance)
    path = std::filesystem::temp_directory_path() / fmt::format("moegrad-test-{}-{}", ::getpid(), counter++);
    std::filesystem::remove_all(path);
    std::filesystem::create_directories(path);
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  std::string file(const std::string& name) const { return (path / name).string(); }
  // File names in the folder, sorted.
  std::vector<std::string> entries() const {
    std::vector<std::string> out;
    for (const auto& e : std::filesystem::directory_iterator(path)) out.push_back(e.path().filename().string());
    std::sort(out.begin(), out.end());
    return out;
  }
};

// XORs one byte of a file in place.
inline void flip_byte(const std::string& path, std::uint64_t offset) {
  std::fstream io(path, std::ios::in | std::ios::out | std::ios::binary);
  REQUIRE(io);
  io.seekg(static_cast<std::streamoff>(offset));
  char c = 0;
  io.read(&c, 1);
  c = static_cast<char>(c ^ 0x5A);
  io.seekp(static_cast<std::streamoff>(offset));
  io.write(&c, 1);
}

// A file's bytes ("" when it cannot be read).
inline std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// The message of the moegrad::Error that f throws, or "(no error)".
inline std::string error_of(const auto& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

inline bool have_h5py() { return std::system("/usr/bin/python3 -c 'import h5py' > /dev/null 2>&1") == 0; }

}  // namespace moegrad::test
