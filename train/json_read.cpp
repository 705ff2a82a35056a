#include "train/json_read.h"

#include <fmt/format.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <unordered_set>

#include "core/error.h"

namespace moegrad::json {

namespace {

// "'source': " when there is a source.
std::string source_prefix(std::string_view source) {
  return source.empty() ? std::string() : fmt::format("'{}': ", elide(source, 200));
}

struct TooDeep {};
struct DuplicateKey {
  std::string key;
};

// nlohmann's message without its "[json.exception.parse_error.101] parse error at " prefix and
// with the token it last read elided (an unterminated 60 MB string is one token).
std::string parse_message(const std::string& what) {
  std::string m = what;
  if (auto p = m.find("parse error at "); p != std::string::npos) m = m.substr(p + 15);
  else if (auto q = m.find("] "); q != std::string::npos && m.rfind("[json.exception.", 0) == 0) m = m.substr(q + 2);
  const std::string marker = "; last read: '";
  if (auto p = m.find(marker); p != std::string::npos) {
    const auto end = m.rfind('\'');
    const std::string token = end > p + marker.size() ? m.substr(p + marker.size(), end - p - marker.size()) : "";
    m = m.substr(0, p) + marker + elide(token, 40) + "'" + (end != std::string::npos ? m.substr(end + 1) : "");
  }
  for (char& c : m)
    if (c == '\n' || c == '\r') c = ' ';
  return elide(m, 240);
}

}  // namespace

const char* type_name(const Json& v) {
  switch (v.type()) {
    case Json::value_t::null: return "null";
    case Json::value_t::boolean: return "a boolean";
    case Json::value_t::number_integer:
    case Json::value_t::number_unsigned: return "an integer";
    case Json::value_t::number_float: return "a floating-point number";
    case Json::value_t::string: return "a string";
    case Json::value_t::array: return "an array";
    case Json::value_t::object: return "an object";
    default: return "a binary value";
  }
}

std::string dump(const Json& v) { return v.dump(-1, ' ', false, Json::error_handler_t::replace); }

std::string elide(std::string_view s, std::size_t keep) {
  if (s.size() <= keep + 3) return std::string(s);
  return fmt::format("{}... ({} bytes)", s.substr(0, keep), s.size());
}

Json parse(std::string_view text, std::string_view source, const char* op) {
  Json out;
  // The keys seen in each open object: a repeated key is an error, not "the last one wins".
  std::vector<std::unordered_set<std::string>> keys;
  try {
    out = Json::parse(text.begin(), text.end(), [&](int depth, Json::parse_event_t event, Json& parsed) {
      switch (event) {
        case Json::parse_event_t::object_start:
        case Json::parse_event_t::array_start:
          if (depth >= kMaxDepth) throw TooDeep{};
          if (event == Json::parse_event_t::object_start) keys.emplace_back();
          break;
        case Json::parse_event_t::object_end: keys.pop_back(); break;
        case Json::parse_event_t::key: {
          const auto& key = parsed.get_ref<const std::string&>();
          if (!keys.back().insert(key).second) throw DuplicateKey{key};
          break;
        }
        default: break;
      }
      return true;
    });
  } catch (const Json::parse_error& e) {
    fail(op, "{}{}", source_prefix(source), parse_message(e.what()));
  } catch (const TooDeep&) {
    fail(op, "{}nested deeper than {} arrays/objects", source_prefix(source), kMaxDepth);
  } catch (const DuplicateKey& d) {
    fail(op, "{}duplicate key '{}'", source_prefix(source), elide(d.key));
  } catch (const Json::exception& e) {  // out_of_range.406: "number overflow parsing '1e400'"
    fail(op, "{}{} (numbers must be finite doubles)", source_prefix(source), parse_message(e.what()));
  }
  return out;
}

Json read_file(const std::string& path, const char* op, std::size_t max_bytes) {
  const std::string where = source_prefix(path);
  std::error_code ec;
  const auto status = std::filesystem::status(path, ec);
  if (ec) fail(op, "{}cannot read: {}", where, ec.message());
  if (std::filesystem::is_directory(status)) fail(op, "{}is a directory, not a JSON file", where);
  if (!std::filesystem::is_regular_file(status)) fail(op, "{}not a regular file", where);
  std::ifstream in(path, std::ios::binary);
  if (!in) fail(op, "{}cannot read: {}", where, std::strerror(errno));
  std::string text(max_bytes + 1, '\0');  // one byte more than allowed tells a file that is too large
  in.read(text.data(), static_cast<std::streamsize>(text.size()));
  if (in.bad()) fail(op, "{}read error", where);
  text.resize(static_cast<std::size_t>(in.gcount()));
  if (text.size() > max_bytes)
    fail(op, "{}larger than {} bytes (a JSON file of options must be small)", where, max_bytes);
  return parse(text, path, op);
}

Json read_object_file(const std::string& path, const char* op, std::size_t max_bytes) {
  Json v = read_file(path, op, max_bytes);
  if (!v.is_object()) fail(op, "{}expected a JSON object {{...}}, got {}", source_prefix(path), type_name(v));
  return v;
}

// ---- Node ----------------------------------------------------------------------------------------

Node::Node() : Node(*[] {
  static const Json null_value;
  return &null_value;
}()) {}

Node::Node(const Json& v, std::string op, std::string source, std::string path)
    : v_(&v), op_(std::move(op)), source_(std::move(source)), path_(std::move(path)) {}

std::string Node::where() const {
  return source_prefix(source_) + (path_.empty() ? std::string() : fmt::format("'{}': ", elide(path_, 200)));
}

void Node::error(const std::string& message) const { fail(op_.c_str(), "{}{}", where(), message); }

void Node::type_error(const char* expected) const {
  if (v_->is_number() || v_->is_boolean()) error(fmt::format("expected {}, got {}", expected, dump(*v_)));
  error(fmt::format("expected {}, got {}", expected, type_name(*v_)));
}

bool Node::as_bool() const {
  if (!v_->is_boolean()) type_error("a boolean");
  return v_->get<bool>();
}

std::int64_t Node::as_int() const {
  if (v_->is_number_unsigned()) {
    const auto u = v_->get<std::uint64_t>();
    if (u > static_cast<std::uint64_t>(INT64_MAX)) error(fmt::format("integer {} is out of range (at most {})", u, INT64_MAX));
    return static_cast<std::int64_t>(u);
  }
  if (v_->is_number_integer()) return v_->get<std::int64_t>();
  if (v_->is_number_float()) {
    const double d = v_->get<double>();
    // Integral and within int64 (2^63 itself is not): 1e3 -> 1000.
    if (std::isfinite(d) && d == std::trunc(d) && d >= -9223372036854775808.0 && d < 9223372036854775808.0)
      return static_cast<std::int64_t>(d);
  }
  type_error("an integer");
}

std::uint64_t Node::as_uint() const {
  if (v_->is_number_unsigned()) return v_->get<std::uint64_t>();
  if (v_->is_number_float()) {
    const double d = v_->get<double>();
    if (std::isfinite(d) && d == std::trunc(d) && d >= 0 && d < 18446744073709551616.0)
      return static_cast<std::uint64_t>(d);
  }
  const std::int64_t i = as_int();
  if (i < 0) error(fmt::format("must be >= 0, got {}", i));
  return static_cast<std::uint64_t>(i);
}

double Node::as_double() const {
  if (!v_->is_number()) type_error("a number");
  return v_->get<double>();
}

const std::string& Node::as_string() const {
  if (!v_->is_string()) type_error("a string");
  return v_->get_ref<const std::string&>();
}

std::int64_t Node::as_int(std::int64_t lo, std::int64_t hi) const {
  const std::int64_t v = as_int();
  if (v < lo || v > hi) error(fmt::format("must be in [{}, {}], got {}", lo, hi, v));
  return v;
}

double Node::as_double(double lo, double hi) const {
  const double v = as_double();
  if (!(v >= lo && v <= hi)) error(fmt::format("must be in [{}, {}], got {}", lo, hi, v));
  return v;
}

std::optional<Node> Node::find(std::string_view key) const {
  if (!v_->is_object()) type_error("an object");
  auto it = v_->find(key);
  if (it == v_->end()) return std::nullopt;
  return child(path_.empty() ? std::string(key) : fmt::format("{}.{}", path_, key), *it);
}

Node Node::at(std::string_view key) const {
  auto n = find(key);
  if (!n) error(fmt::format("missing key '{}'", elide(key)));
  return *n;
}

std::vector<std::pair<std::string, Node>> Node::members() const {
  if (!v_->is_object()) type_error("an object");
  std::vector<std::pair<std::string, Node>> out;
  for (auto it = v_->begin(); it != v_->end(); ++it)
    out.emplace_back(it.key(), child(path_.empty() ? it.key() : fmt::format("{}.{}", path_, it.key()), *it));
  return out;
}

Node Node::element(std::int64_t index) const {
  if (!v_->is_array()) type_error("an array");
  if (index < 0 || static_cast<std::size_t>(index) >= v_->size())
    error(fmt::format("index {} out of range for {} elements", index, v_->size()));
  return child(fmt::format("{}[{}]", path_, index), (*v_)[static_cast<std::size_t>(index)]);
}

std::vector<Node> Node::as_array() const {
  if (!v_->is_array()) type_error("an array");
  std::vector<Node> out;
  for (std::size_t i = 0; i < v_->size(); ++i) out.push_back(element(static_cast<std::int64_t>(i)));
  return out;
}

std::size_t Node::size() const {
  if (!v_->is_array() && !v_->is_object()) type_error("an array or an object");
  return v_->size();
}

}  // namespace moegrad::json
