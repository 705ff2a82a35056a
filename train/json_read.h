// JSON on nlohmann-json: configs, layer specs, metrics lines and fixture attributes.
// Writing uses json::Json (nlohmann::ordered_json: members keep the order they were set in).
// Reading goes through json::Node, a view that knows the file and its path inside it, so every
// error is one line naming both:
//
//   const json::Json doc = json::read_object_file("run.json", "config");
//   json::Node root(doc, "config", "run.json");
//   std::int64_t dim = root.at("model").at("dim").as_int();
//     // "[config] 'run.json': 'model.dim': expected an integer, got a string"
//
// Integers stay exact (int64/uint64); a float where an integer is required is accepted only
// when it is integral and in range (1e3 -> 1000; 1.5 and 1e300 are errors). Numbers beyond a
// double (1e400) are parse errors, so every number read is finite; long values are elided.
#pragma once
#include <cstddef>
#include <cstdint>
#include <limits>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

namespace moegrad::json {

using Json = nlohmann::ordered_json;

inline constexpr std::size_t kMaxFileBytes = std::size_t{1} << 20;  // configs and specs: 1 MiB
inline constexpr int kMaxDepth = 64;                                 // nesting of arrays/objects

// "null", "a boolean", "an integer", "a floating-point number", "a string", "an array", "an object"
const char* type_name(const Json& v);
// Compact text; doubles in their shortest round-trip form ("1.0", "0.1").
std::string dump(const Json& v);
// s itself when short, else its first `keep` characters + "..." (for messages).
std::string elide(std::string_view s, std::size_t keep = 60);

// Parses one JSON text. Errors: "[op] 'source': line 3, column 14: syntax error ..." (the
// source part left out when empty); numbers must fit a double, keys may not repeat within
// an object, nesting is at most kMaxDepth.
Json parse(std::string_view text, std::string_view source = "", const char* op = "json");
// Reads and parses a regular file of at most max_bytes (reads at most max_bytes + 1 bytes, so
// /dev/zero or a huge file fail at once). Errors name the file.
Json read_file(const std::string& path, const char* op, std::size_t max_bytes = kMaxFileBytes);
// The same, and the root must be an object ("[op] 'path': expected a JSON object, got an array").
Json read_object_file(const std::string& path, const char* op, std::size_t max_bytes = kMaxFileBytes);

// A read-only view of one value of a document: the value, the op and source for errors, and the
// path inside the document ("args.hidden_layers[1]"; "" for the root). The document must
// outlive its nodes.
class Node {
 public:
  Node();  // a null value
  explicit Node(const Json& v, std::string op = "json", std::string source = "", std::string path = "");

  const Json& value() const { return *v_; }
  const std::string& path() const { return path_; }
  bool is_null() const { return v_->is_null(); }
  bool is_bool() const { return v_->is_boolean(); }
  bool is_int() const { return v_->is_number_integer(); }  // int64 or uint64
  bool is_double() const { return v_->is_number_float(); }
  bool is_number() const { return v_->is_number(); }
  bool is_string() const { return v_->is_string(); }
  bool is_array() const { return v_->is_array(); }
  bool is_object() const { return v_->is_object(); }

  // Typed access; a wrong kind throws "[op] 'source': 'path': expected an integer, got a string".
  bool as_bool() const;
  std::int64_t as_int() const;    // an integer, or an integral float within int64
  std::uint64_t as_uint() const;  // the same, >= 0, within uint64
  double as_double() const;       // any number
  const std::string& as_string() const;
  // bool, any integer type (range-checked), float/double, std::string.
  template <class T> T as() const;
  // An integer or a number within [lo, hi]: "'path': must be in [1, 64], got 100".
  std::int64_t as_int(std::int64_t lo, std::int64_t hi) const;
  double as_double(double lo, double hi) const;

  // Objects.
  std::optional<Node> find(std::string_view key) const;  // nullopt when absent
  Node at(std::string_view key) const;                    // "'args': missing key 'dim'"
  std::vector<std::pair<std::string, Node>> members() const;
  // Arrays.
  template <std::integral I> Node at(I index) const { return element(static_cast<std::int64_t>(index)); }
  std::vector<Node> as_array() const;  // the elements
  std::size_t size() const;  // elements of an array, members of an object

  // Throws "[op] 'source': 'path': <message>".
  [[noreturn]] void error(const std::string& message) const;
  // "'source': 'path': " (the parts that are set), for callers building their own messages.
  std::string where() const;

 private:
  Node child(std::string path, const Json& v) const { return Node(v, op_, source_, std::move(path)); }
  Node element(std::int64_t index) const;
  [[noreturn]] void type_error(const char* expected) const;

  const Json* v_;
  std::string op_, source_, path_;
};

template <class T> T Node::as() const {
  if constexpr (std::is_same_v<T, bool>) {
    return as_bool();
  } else if constexpr (std::is_integral_v<T> && std::is_unsigned_v<T>) {
    const std::uint64_t v = as_uint();
    if (v > std::numeric_limits<T>::max())
      error("must be at most " + std::to_string(std::numeric_limits<T>::max()) + ", got " + std::to_string(v));
    return static_cast<T>(v);
  } else if constexpr (std::is_integral_v<T>) {
    return static_cast<T>(as_int(std::numeric_limits<T>::min(), std::numeric_limits<T>::max()));
  } else if constexpr (std::is_floating_point_v<T>) {
    return static_cast<T>(as_double());
  } else {
    static_assert(std::is_same_v<T, std::string>, "json::Node::as<T>: unsupported T");
    return as_string();
  }
}

}  // namespace moegrad::json
