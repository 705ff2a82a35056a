// JSON: Value, a recursive-descent parser with line/column errors, and dump.
#include "train/json.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <limits>
#include <unordered_set>

#include <fmt/format.h>

#include "core/error.h"

namespace moegrad::json {

namespace {

constexpr int kMaxDepth = 512;

std::string child_path(const std::string& parent, std::string_view key) {
  return parent.empty() ? std::string(key) : parent + "." + std::string(key);
}

std::string element_path(const std::string& parent, std::size_t i) { return fmt::format("{}[{}]", parent, i); }

// Length of the valid UTF-8 sequence starting at p (at most n bytes available), or 0 when the
// bytes there are not valid UTF-8 (overlong forms, surrogates and code points above U+10FFFF
// are invalid).
std::size_t utf8_length(const unsigned char* p, std::size_t n) {
  const unsigned char c = p[0];
  if (c < 0x80) return 1;
  std::size_t len;
  unsigned char lo = 0x80, hi = 0xBF;  // range of the second byte
  if (c >= 0xC2 && c <= 0xDF) {
    len = 2;
  } else if (c >= 0xE0 && c <= 0xEF) {
    len = 3;
    if (c == 0xE0) lo = 0xA0;
    if (c == 0xED) hi = 0x9F;
  } else if (c >= 0xF0 && c <= 0xF4) {
    len = 4;
    if (c == 0xF0) lo = 0x90;
    if (c == 0xF4) hi = 0x8F;
  } else {
    return 0;
  }
  if (n < len || p[1] < lo || p[1] > hi) return 0;
  for (std::size_t i = 2; i < len; ++i)
    if (p[i] < 0x80 || p[i] > 0xBF) return 0;
  return len;
}

void append_utf8(std::string& out, std::uint32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

}  // namespace

const char* type_name(Type t) {
  switch (t) {
    case Type::null: return "null";
    case Type::boolean: return "a boolean";
    case Type::integer: return "an integer";
    case Type::number: return "a floating-point number";
    case Type::string: return "a string";
    case Type::array: return "an array";
    case Type::object: return "an object";
  }
  return "?";
}

// ---- Value -------------------------------------------------------------------------------------

namespace {
// "[json] 'args.dim': message", or "[json] message" for the root.
[[noreturn]] void fail_at(const std::string& path, const std::string& message) {
  if (path.empty()) fail("json", "{}", message);
  fail("json", "'{}': {}", path, message);
}
}  // namespace

void Value::type_error(const char* expected) const {
  fail_at(path_, fmt::format("expected {}, got {}", expected, type_name(type())));
}

void Value::range_error(std::int64_t v, int bits, bool is_signed) const {
  fail_at(path_, fmt::format("{} does not fit in {}int{}", v, is_signed ? "" : "u", bits));
}

Value Value::array(Array items) {
  Value v;
  v.data_ = Array{};
  for (auto& item : items) v.push_back(std::move(item));
  return v;
}

Value Value::object(Object members) {
  Value v;
  v.data_ = Object{};
  for (auto& [k, m] : members) v.set(std::move(k), std::move(m));
  return v;
}

bool Value::as_bool() const {
  if (!is_bool()) type_error("a boolean");
  return std::get<bool>(data_);
}

std::int64_t Value::as_int() const {
  if (!is_int()) type_error("an integer");
  return std::get<std::int64_t>(data_);
}

double Value::as_double() const {
  if (is_int()) return static_cast<double>(std::get<std::int64_t>(data_));
  if (!is_double()) type_error("a number");
  return std::get<double>(data_);
}

const std::string& Value::as_string() const {
  if (!is_string()) type_error("a string");
  return std::get<std::string>(data_);
}

const Value::Array& Value::as_array() const {
  if (!is_array()) type_error("an array");
  return std::get<Array>(data_);
}

Value::Array& Value::as_array() {
  if (!is_array()) type_error("an array");
  return std::get<Array>(data_);
}

const Value::Object& Value::as_object() const {
  if (!is_object()) type_error("an object");
  return std::get<Object>(data_);
}

Value::Object& Value::as_object() {
  if (!is_object()) type_error("an object");
  return std::get<Object>(data_);
}

const Value* Value::find(std::string_view key) const {
  for (const auto& [k, v] : as_object())
    if (k == key) return &v;
  return nullptr;
}

bool Value::contains(std::string_view key) const { return find(key) != nullptr; }

const Value& Value::at(std::string_view key) const {
  const Value* v = find(key);
  if (!v) fail_at(path_, fmt::format("missing key '{}'", key));
  return *v;
}

Value& Value::at(std::string_view key) { return const_cast<Value&>(std::as_const(*this).at(key)); }

Value& Value::set(std::string key, Value v) {
  if (is_null()) data_ = Object{};
  Object& members = as_object();
  v.repath(child_path(path_, key));
  for (auto& [k, m] : members) {
    if (k == key) {
      m = std::move(v);
      return *this;
    }
  }
  members.emplace_back(std::move(key), std::move(v));
  return *this;
}

const Value& Value::element(std::int64_t index) const {
  const Array& items = as_array();
  if (index < 0 || static_cast<std::size_t>(index) >= items.size())
    fail_at(path_, fmt::format("index {} out of range for {} elements", index, items.size()));
  return items[static_cast<std::size_t>(index)];
}

Value& Value::element(std::int64_t index) { return const_cast<Value&>(std::as_const(*this).element(index)); }

Value& Value::push_back(Value v) {
  if (is_null()) data_ = Array{};
  Array& items = as_array();
  v.repath(element_path(path_, items.size()));
  items.push_back(std::move(v));
  return *this;
}

std::size_t Value::size() const {
  if (is_array()) return std::get<Array>(data_).size();
  if (is_object()) return std::get<Object>(data_).size();
  type_error("an array or an object");
}

void Value::repath(std::string path) {
  path_ = std::move(path);
  if (is_array()) {
    auto& items = std::get<Array>(data_);
    for (std::size_t i = 0; i < items.size(); ++i) items[i].repath(element_path(path_, i));
  } else if (is_object()) {
    for (auto& [k, v] : std::get<Object>(data_)) v.repath(child_path(path_, k));
  }
}

bool operator==(const Value& a, const Value& b) {
  if (a.type() != b.type()) return false;
  if (!a.is_object()) return a.data_ == b.data_;  // element-wise for arrays (paths ignored)
  const auto& x = std::get<Value::Object>(a.data_);
  const auto& y = std::get<Value::Object>(b.data_);
  if (x.size() != y.size()) return false;
  for (const auto& [k, v] : x) {
    const Value* w = b.find(k);
    if (!w || !(v == *w)) return false;
  }
  return true;
}

// ---- parse -------------------------------------------------------------------------------------

class Parser {
 public:
  explicit Parser(std::string_view text) : s_(text) {}

  Value document(std::string_view name) {
    skip_ws();
    Value v = value(std::string(name), 0);
    skip_ws();
    if (i_ < s_.size()) error(i_, fmt::format("unexpected {} after the value", found()));
    return v;
  }

 private:
  [[noreturn]] void error(std::size_t at, const std::string& message) const {
    std::size_t line = 1, column = 1;
    for (std::size_t k = 0; k < at && k < s_.size(); ++k) {
      const auto c = static_cast<unsigned char>(s_[k]);
      if (c == '\n') {
        ++line;
        column = 1;
      } else if ((c & 0xC0) != 0x80) {  // count code points, not UTF-8 continuation bytes
        ++column;
      }
    }
    fail("json", "line {}, column {}: {}", line, column, message);
  }

  // What sits at the current position, for "expected X, got Y".
  std::string found() const {
    if (i_ >= s_.size()) return "end of input";
    const auto c = static_cast<unsigned char>(s_[i_]);
    if (c >= 0x20 && c < 0x7F) return fmt::format("'{}'", static_cast<char>(c));
    return fmt::format("byte 0x{:02X}", c);
  }

  void skip_ws() {
    while (i_ < s_.size() && (s_[i_] == ' ' || s_[i_] == '\t' || s_[i_] == '\n' || s_[i_] == '\r')) ++i_;
  }

  bool peek(char c) const { return i_ < s_.size() && s_[i_] == c; }

  Value value(std::string path, int depth) {
    if (i_ >= s_.size()) error(i_, "expected a value, got end of input");
    Value v;
    switch (s_[i_]) {
      case '{': v = object(path, depth); break;
      case '[': v = array(path, depth); break;
      case '"': v.data_ = string(); break;
      case 't':
        literal("true");
        v.data_ = true;
        break;
      case 'f':
        literal("false");
        v.data_ = false;
        break;
      case 'n': literal("null"); break;
      default:
        if (s_[i_] == '-' || (s_[i_] >= '0' && s_[i_] <= '9')) {
          number(v);
          break;
        }
        error(i_, fmt::format("expected a value, got {}", found()));
    }
    v.path_ = std::move(path);
    return v;
  }

  void literal(std::string_view word) {
    if (s_.substr(i_, word.size()) != word) error(i_, "invalid literal (expected true, false or null)");
    i_ += word.size();
  }

  void enter(int depth) const {
    if (depth >= kMaxDepth) error(i_, fmt::format("nesting deeper than {} levels", kMaxDepth));
  }

  Value object(const std::string& path, int depth) {
    enter(depth);
    ++i_;  // '{'
    Value v;
    v.data_ = Value::Object{};
    auto& members = std::get<Value::Object>(v.data_);
    std::unordered_set<std::string> seen;
    skip_ws();
    if (peek('}')) {
      ++i_;
      return v;
    }
    for (;;) {
      skip_ws();
      if (!peek('"')) error(i_, fmt::format("expected a string key, got {}", found()));
      const std::size_t key_at = i_;
      std::string key = string();
      if (!seen.insert(key).second) error(key_at, fmt::format("duplicate key '{}'", key));
      skip_ws();
      if (!peek(':')) error(i_, fmt::format("expected ':', got {}", found()));
      ++i_;
      skip_ws();
      Value m = value(child_path(path, key), depth + 1);
      members.emplace_back(std::move(key), std::move(m));
      skip_ws();
      if (peek(',')) {
        ++i_;
        continue;
      }
      if (peek('}')) {
        ++i_;
        return v;
      }
      error(i_, fmt::format("expected ',' or '}}', got {}", found()));
    }
  }

  Value array(const std::string& path, int depth) {
    enter(depth);
    ++i_;  // '['
    Value v;
    v.data_ = Value::Array{};
    auto& items = std::get<Value::Array>(v.data_);
    skip_ws();
    if (peek(']')) {
      ++i_;
      return v;
    }
    for (;;) {
      skip_ws();
      items.push_back(value(element_path(path, items.size()), depth + 1));
      skip_ws();
      if (peek(',')) {
        ++i_;
        continue;
      }
      if (peek(']')) {
        ++i_;
        return v;
      }
      error(i_, fmt::format("expected ',' or ']', got {}", found()));
    }
  }

  std::uint32_t hex4(std::size_t at) {
    if (i_ + 4 > s_.size()) error(at, "invalid \\u escape: expected 4 hex digits");
    std::uint32_t cp = 0;
    for (int k = 0; k < 4; ++k) {
      const char c = s_[i_ + k];
      cp <<= 4;
      if (c >= '0' && c <= '9') cp |= static_cast<std::uint32_t>(c - '0');
      else if (c >= 'a' && c <= 'f') cp |= static_cast<std::uint32_t>(c - 'a' + 10);
      else if (c >= 'A' && c <= 'F') cp |= static_cast<std::uint32_t>(c - 'A' + 10);
      else error(at, "invalid \\u escape: expected 4 hex digits");
    }
    i_ += 4;
    return cp;
  }

  std::string string() {
    const std::size_t start = i_;
    ++i_;  // '"'
    std::string out;
    for (;;) {
      // Copy the run of plain characters at once.
      std::size_t j = i_;
      while (j < s_.size()) {
        const auto c = static_cast<unsigned char>(s_[j]);
        if (c == '"' || c == '\\' || c < 0x20 || c >= 0x80) break;
        ++j;
      }
      out.append(s_.data() + i_, j - i_);
      i_ = j;
      if (i_ >= s_.size()) error(start, "unterminated string");
      const auto c = static_cast<unsigned char>(s_[i_]);
      if (c == '"') {
        ++i_;
        return out;
      }
      if (c < 0x20) error(i_, fmt::format("control character U+{:04X} in a string (escape it)", c));
      if (c >= 0x80) {
        const std::size_t len = utf8_length(reinterpret_cast<const unsigned char*>(s_.data()) + i_, s_.size() - i_);
        if (len == 0) error(i_, "invalid UTF-8 in a string");
        out.append(s_.data() + i_, len);
        i_ += len;
        continue;
      }
      // An escape.
      const std::size_t esc = i_;
      ++i_;
      if (i_ >= s_.size()) error(start, "unterminated string");
      const char e = s_[i_++];
      switch (e) {
        case '"': out += '"'; break;
        case '\\': out += '\\'; break;
        case '/': out += '/'; break;
        case 'b': out += '\b'; break;
        case 'f': out += '\f'; break;
        case 'n': out += '\n'; break;
        case 'r': out += '\r'; break;
        case 't': out += '\t'; break;
        case 'u': {
          std::uint32_t cp = hex4(esc);
          if (cp >= 0xDC00 && cp <= 0xDFFF) error(esc, fmt::format("unpaired surrogate \\u{:04X}", cp));
          if (cp >= 0xD800 && cp <= 0xDBFF) {
            if (s_.substr(i_, 2) != "\\u") error(esc, fmt::format("unpaired surrogate \\u{:04X}", cp));
            const std::size_t low_at = i_;
            i_ += 2;
            const std::uint32_t low = hex4(low_at);
            if (low < 0xDC00 || low > 0xDFFF)
              error(esc, fmt::format("unpaired surrogate \\u{:04X} (followed by \\u{:04X})", cp, low));
            cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
          }
          append_utf8(out, cp);
          break;
        }
        default: {
          const auto b = static_cast<unsigned char>(e);
          error(esc, b >= 0x20 && b < 0x7F ? fmt::format("invalid escape '\\{}'", e)
                                           : fmt::format("invalid escape (byte 0x{:02X})", b));
        }
      }
    }
  }

  static bool digit(char c) { return c >= '0' && c <= '9'; }

  void number(Value& v) {
    const std::size_t start = i_;
    bool negative = false;
    if (peek('-')) {
      negative = true;
      ++i_;
    }
    if (i_ >= s_.size() || !digit(s_[i_])) error(i_, fmt::format("invalid number: expected a digit, got {}", found()));
    if (s_[i_] == '0') {
      ++i_;
      if (i_ < s_.size() && digit(s_[i_])) error(start, "invalid number: leading zero");
    } else {
      while (i_ < s_.size() && digit(s_[i_])) ++i_;
    }
    const std::size_t int_end = i_;
    bool integer = true;
    if (peek('.')) {
      integer = false;
      ++i_;
      if (i_ >= s_.size() || !digit(s_[i_]))
        error(i_, fmt::format("invalid number: expected a digit after '.', got {}", found()));
      while (i_ < s_.size() && digit(s_[i_])) ++i_;
    }
    std::size_t exp_at = 0;
    if (peek('e') || peek('E')) {
      integer = false;
      ++i_;
      if (peek('+') || peek('-')) ++i_;
      exp_at = i_;
      if (i_ >= s_.size() || !digit(s_[i_]))
        error(i_, fmt::format("invalid number: expected a digit in the exponent, got {}", found()));
      while (i_ < s_.size() && digit(s_[i_])) ++i_;
    }
    const char* first = s_.data() + start;
    const char* last = s_.data() + i_;
    if (integer) {
      std::int64_t x = 0;
      const auto r = std::from_chars(first, last, x);
      if (r.ec == std::errc() && r.ptr == last) {
        v.data_ = x;
        return;
      }
      // Too large for int64: kept as a double (the nearest one).
    }
    double d = 0;
    const auto r = std::from_chars(first, last, d);
    if (r.ec == std::errc::result_out_of_range) {
      // Overflow or underflow? Estimate the decimal exponent of the leading digit.
      std::int64_t magnitude = 0;
      std::size_t k = start + (negative ? 1 : 0);
      while (k < int_end && s_[k] == '0') ++k;
      if (k < int_end) {
        magnitude = static_cast<std::int64_t>(int_end - k);
      } else if (int_end < s_.size() && s_[int_end] == '.') {
        for (k = int_end + 1; k < s_.size() && s_[k] == '0'; ++k) --magnitude;
      }
      if (exp_at) {
        std::int64_t e = 0;
        for (std::size_t m = exp_at; m < i_ && e < 1000000; ++m) e = e * 10 + (s_[m] - '0');
        magnitude += s_[exp_at - 1] == '-' ? -e : e;
      }
      if (magnitude > 0) error(start, fmt::format("number {} is out of range for a double", std::string_view(first, last - first)));
      d = negative ? -0.0 : 0.0;  // underflow: the nearest double is zero
    } else if (r.ec != std::errc() || r.ptr != last) {
      error(start, "invalid number");
    }
    v.data_ = d;
  }

  std::string_view s_;
  std::size_t i_ = 0;
};

Value parse(std::string_view text, std::string_view name) { return Parser(text).document(name); }

// ---- dump --------------------------------------------------------------------------------------

namespace {

void dump_string(std::string& out, const std::string& s) {
  out += '"';
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  std::size_t i = 0;
  while (i < s.size()) {
    const unsigned char c = p[i];
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\b': out += "\\b"; break;
      case '\f': out += "\\f"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (c < 0x20) {
          out += fmt::format("\\u{:04x}", c);
        } else if (c < 0x80) {
          out += static_cast<char>(c);
        } else {
          const std::size_t len = utf8_length(p + i, s.size() - i);
          if (len == 0) {
            out += "\\ufffd";  // invalid UTF-8 byte: the replacement character
          } else {
            out.append(s, i, len);
            i += len;
            continue;
          }
        }
    }
    ++i;
  }
  out += '"';
}

void dump_double(std::string& out, double d) {
  if (!std::isfinite(d)) {
    out += "null";
    return;
  }
  const std::string s = fmt::format("{}", d);  // shortest representation that round-trips
  out += s;
  if (s.find_first_of(".eE") == std::string::npos) out += ".0";  // stays a double when parsed
}

void newline(std::string& out, int indent, int level) {
  if (indent < 0) return;
  out += '\n';
  out.append(static_cast<std::size_t>(indent) * static_cast<std::size_t>(level), ' ');
}

void dump_to(std::string& out, const Value& v, int indent, int level) {
  switch (v.type()) {
    case Type::null: out += "null"; break;
    case Type::boolean: out += v.as_bool() ? "true" : "false"; break;
    case Type::integer: out += fmt::format("{}", v.as_int()); break;
    case Type::number: dump_double(out, v.as_double()); break;
    case Type::string: dump_string(out, v.as_string()); break;
    case Type::array: {
      const auto& items = v.as_array();
      out += '[';
      for (std::size_t i = 0; i < items.size(); ++i) {
        if (i) out += ',';
        newline(out, indent, level + 1);
        dump_to(out, items[i], indent, level + 1);
      }
      if (!items.empty()) newline(out, indent, level);
      out += ']';
      break;
    }
    case Type::object: {
      const auto& members = v.as_object();
      out += '{';
      for (std::size_t i = 0; i < members.size(); ++i) {
        if (i) out += ',';
        newline(out, indent, level + 1);
        dump_string(out, members[i].first);
        out += indent < 0 ? ":" : ": ";
        dump_to(out, members[i].second, indent, level + 1);
      }
      if (!members.empty()) newline(out, indent, level);
      out += '}';
      break;
    }
  }
}

}  // namespace

std::string dump(const Value& v, int indent) {
  std::string out;
  dump_to(out, v, indent, 0);
  return out;
}

}  // namespace moegrad::json
