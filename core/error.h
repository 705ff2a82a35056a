// Library errors: thrown, never exit. Messages start with the op in brackets:
//   [matmul] inner dims differ: (2, 3) vs (4, 5)
#pragma once
#include <fmt/format.h>
#include <stdexcept>
#include <string>

namespace moegrad {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

template <class... Args>
[[noreturn]] void fail(const char* op, fmt::format_string<Args...> f, Args&&... args) {
  throw Error(fmt::format("[{}] ", op) + fmt::format(f, std::forward<Args>(args)...));
}

}  // namespace moegrad

// MOEGRAD_CHECK(cond, op, "fmt", args...) throws moegrad::Error "[op] message" when cond is false.
#define MOEGRAD_CHECK(cond, op, ...)       \
  do {                                     \
    if (!(cond)) ::moegrad::fail(op, __VA_ARGS__); \
  } while (0)
