// A small, complete JSON library (RFC 8259) for configs, metrics lines and fixture attributes.
//
//   json::Value cfg = json::parse(text, "config");
//   std::int64_t dim = cfg.at("model").at("dim").as_int();  // "[json] 'config.model.dim': expected an integer, got a string"
//   double lr = cfg.get_or("lr", 1e-3);                      // absent or null -> 1e-3
//   json::Value line = json::Value::object().set("step", 10).set("loss", 0.25);
//   json::dump(line);                                        // {"step":10,"loss":0.25}
//
// Numbers keep their kind: an integer literal that fits in int64 stays an exact int64,
// everything else is a double. Objects keep their members in insertion order. Every value
// knows its path in the document ("args.hidden_layers[1]"), which accessor errors name;
// parse, set and push_back maintain it.
#pragma once
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

namespace moegrad::json {

enum class Type { null, boolean, integer, number, string, array, object };  // number: a double

// "null", "a boolean", "an integer", "a floating-point number", "a string", "an array", "an object"
const char* type_name(Type t);

class Value {
 public:
  using Array = std::vector<Value>;
  using Member = std::pair<std::string, Value>;
  using Object = std::vector<Member>;

  Value() = default;  // null
  Value(std::nullptr_t) {}
  Value(bool b) : data_(b) {}
  template <std::integral T>
    requires(!std::same_as<T, bool>)
  Value(T v) {
    if constexpr (std::is_unsigned_v<T> && sizeof(T) >= sizeof(std::int64_t)) {
      if (v > static_cast<T>(INT64_MAX)) {
        data_ = static_cast<double>(v);
        return;
      }
    }
    data_ = static_cast<std::int64_t>(v);
  }
  template <std::floating_point T> Value(T v) : data_(static_cast<double>(v)) {}
  Value(const char* s) : data_(std::string(s)) {}
  Value(std::string s) : data_(std::move(s)) {}
  Value(std::string_view s) : data_(std::string(s)) {}

  static Value array(Array items = {});
  static Value object(Object members = {});  // a repeated key keeps its last value

  // ---- kind ------------------------------------------------------------------------------------
  Type type() const { return static_cast<Type>(data_.index()); }
  bool is_null() const { return type() == Type::null; }
  bool is_bool() const { return type() == Type::boolean; }
  bool is_int() const { return type() == Type::integer; }
  bool is_double() const { return type() == Type::number; }
  bool is_number() const { return is_int() || is_double(); }
  bool is_string() const { return type() == Type::string; }
  bool is_array() const { return type() == Type::array; }
  bool is_object() const { return type() == Type::object; }

  // ---- typed access: "[json] 'path': expected an integer, got a string" ------------------------
  bool as_bool() const;
  std::int64_t as_int() const;
  double as_double() const;  // integers convert
  const std::string& as_string() const;
  const Array& as_array() const;
  Array& as_array();
  const Object& as_object() const;
  Object& as_object();
  // bool, any integer type (range-checked), float/double, std::string, or Value itself.
  template <class T> T as() const;

  // ---- objects (each throws unless this is an object) -------------------------------------------
  bool contains(std::string_view key) const;
  const Value* find(std::string_view key) const;  // nullptr when absent
  const Value& at(std::string_view key) const;    // "[json] 'args': missing key 'dim'"
  Value& at(std::string_view key);
  // The member converted to T, or fallback when the key is absent or null.
  template <class T> T get_or(std::string_view key, const T& fallback) const;
  std::string get_or(std::string_view key, const char* fallback) const;
  // Inserts or replaces (a replaced key keeps its position); a null value becomes an object.
  // Returns *this, so calls chain.
  Value& set(std::string key, Value v);

  // ---- arrays ----------------------------------------------------------------------------------
  // "[json] 'xs': index 3 out of range for 2 elements"
  template <std::integral I> const Value& at(I index) const { return element(static_cast<std::int64_t>(index)); }
  template <std::integral I> Value& at(I index) { return element(static_cast<std::int64_t>(index)); }
  Value& push_back(Value v);  // a null value becomes an array; returns *this

  std::size_t size() const;  // elements of an array, members of an object; throws otherwise

  // Where this value sits in its document, e.g. "args.hidden_layers[1]"; "" for the root.
  const std::string& path() const { return path_; }

  // Deep equality; objects compare as unordered maps; an integer never equals a double.
  friend bool operator==(const Value& a, const Value& b);

 private:
  friend class Parser;
  [[noreturn]] void type_error(const char* expected) const;
  [[noreturn]] void range_error(std::int64_t v, int bits, bool is_signed) const;
  const Value& element(std::int64_t index) const;
  Value& element(std::int64_t index);
  void repath(std::string path);

  std::variant<std::nullptr_t, bool, std::int64_t, double, std::string, Array, Object> data_;
  std::string path_;
};

// Parses one JSON text (surrounding whitespace allowed). Errors name the place:
//   "[json] line 3, column 14: expected ',' or '}', got ']'"
// `name` becomes the root's path, so accessor errors read "'args.dim': ..." for name "args".
Value parse(std::string_view text, std::string_view name = "");

// Compact (no spaces) when indent < 0, else pretty-printed with `indent` spaces per level.
// Doubles print in their shortest round-trip form and always as doubles ("1.0", "1e+300");
// NaN and infinities, which JSON cannot express, print as null.
std::string dump(const Value& v, int indent = -1);

// ---- templates ---------------------------------------------------------------------------------

template <class T> T Value::as() const {
  if constexpr (std::is_same_v<T, Value>) {
    return *this;
  } else if constexpr (std::is_same_v<T, bool>) {
    return as_bool();
  } else if constexpr (std::is_integral_v<T>) {
    const std::int64_t v = as_int();
    if (!std::in_range<T>(v)) range_error(v, static_cast<int>(sizeof(T) * 8), std::is_signed_v<T>);
    return static_cast<T>(v);
  } else if constexpr (std::is_floating_point_v<T>) {
    return static_cast<T>(as_double());
  } else if constexpr (std::is_same_v<T, std::string>) {
    return as_string();
  } else {
    static_assert(std::is_same_v<T, Value>, "json::Value::as<T>: unsupported T");
  }
}

template <class T> T Value::get_or(std::string_view key, const T& fallback) const {
  const Value* v = find(key);
  return v && !v->is_null() ? v->as<T>() : fallback;
}

inline std::string Value::get_or(std::string_view key, const char* fallback) const {
  return get_or<std::string>(key, std::string(fallback));
}

}  // namespace moegrad::json
