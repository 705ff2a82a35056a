// train/json: parsing, dumping, exact integers, escapes, builders, and every error with its
// line and column.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <string>

#include "core/error.h"
#include "train/json.h"

namespace json = moegrad::json;
using doctest::Contains;
using json::Type;
using json::Value;
using moegrad::Error;

namespace {

// The error message parse gives for text.
std::string parse_error(std::string_view text) {
  try {
    json::parse(text);
  } catch (const Error& e) {
    return e.what();
  }
  return "(no error)";
}

}  // namespace

TEST_CASE("json: scalars parse with their kind; integers stay exact") {
  CHECK(json::parse("null").is_null());
  CHECK(json::parse("true").as_bool());
  CHECK_FALSE(json::parse(" false ").as_bool());
  CHECK(json::parse("0").as_int() == 0);
  CHECK(json::parse("-0").type() == Type::integer);
  CHECK(json::parse("42").as_int() == 42);
  CHECK(json::parse("-7").as_int() == -7);
  CHECK(json::parse("9007199254740993").as_int() == 9007199254740993LL);  // 2^53 + 1: not a double
  CHECK(json::parse("9223372036854775807").as_int() == std::numeric_limits<std::int64_t>::max());
  CHECK(json::parse("-9223372036854775808").as_int() == std::numeric_limits<std::int64_t>::min());
  const Value big = json::parse("9223372036854775808");  // beyond int64: the nearest double
  CHECK(big.type() == Type::number);
  CHECK(big.as_double() == 9223372036854775808.0);
  CHECK(json::parse("1.5").as_double() == 1.5);
  CHECK(json::parse("1.0").type() == Type::number);
  CHECK(json::parse("1E3").as_double() == 1000.0);
  CHECK(json::parse("-2.5e-3").as_double() == -2.5e-3);
  CHECK(json::parse("0.1").as_double() == 0.1);
  CHECK(json::parse("1e+2").as_double() == 100.0);
  CHECK(json::parse("5e-324").as_double() == std::numeric_limits<double>::denorm_min());
  CHECK(json::parse("1e-400").as_double() == 0.0);  // underflow gives zero
  CHECK(std::signbit(json::parse("-1e-400").as_double()));
  CHECK(json::parse("0.000000000000000000001e-400").as_double() == 0.0);
  CHECK(json::parse("1.7976931348623157e308").as_double() == std::numeric_limits<double>::max());
  CHECK(json::parse("3").as_double() == 3.0);  // ints convert to double
}

TEST_CASE("json: strings, escapes and UTF-8") {
  CHECK(json::parse(R"("")").as_string().empty());
  CHECK(json::parse(R"("a\"b\\c\/d\be\ff\ng\rh\ti")").as_string() == "a\"b\\c/d\be\ff\ng\rh\ti");
  CHECK(json::parse(R"("\u00e9\u00E9")").as_string() == "\xC3\xA9\xC3\xA9");
  CHECK(json::parse(R"("\u20ac")").as_string() == "\xE2\x82\xAC");
  CHECK(json::parse(R"("\ud83d\ude00")").as_string() == "\xF0\x9F\x98\x80");  // surrogate pair
  CHECK(json::parse(R"("\u0000x")").as_string() == std::string("\0x", 2));
  CHECK(json::parse("\"caf\xC3\xA9 \xF0\x9F\x98\x80\"").as_string() == "caf\xC3\xA9 \xF0\x9F\x98\x80");  // raw UTF-8
  // dump escapes what must be escaped and keeps UTF-8 as it is.
  CHECK(json::dump(Value("a\"b\\c\n\t\x01\x1f/")) == R"("a\"b\\c\n\t\u0001\u001f/")");
  CHECK(json::dump(Value("\xC3\xA9\xF0\x9F\x98\x80")) == "\"\xC3\xA9\xF0\x9F\x98\x80\"");
  CHECK(json::dump(Value(std::string("\0", 1))) == R"("\u0000")");
  CHECK(json::dump(Value("bad \xFF byte")) == R"("bad \ufffd byte")");  // invalid UTF-8 is replaced
}

TEST_CASE("json: dump and parse round trip; objects keep insertion order") {
  const std::string text = R"({"z":1,"a":[1,2.5,"x",null,true,false,{}],"m":{"k":[]},"big":9007199254740993})";
  const Value v = json::parse(text);
  CHECK(json::dump(v) == text);
  CHECK(json::parse(json::dump(v)) == v);
  CHECK(v.as_object()[0].first == "z");
  CHECK(json::dump(v, 2) == R"({
  "z": 1,
  "a": [
    1,
    2.5,
    "x",
    null,
    true,
    false,
    {}
  ],
  "m": {
    "k": []
  },
  "big": 9007199254740993
})");
  CHECK(json::parse(json::dump(v, 2)) == v);
  CHECK(json::dump(json::parse(" [ ] ")) == "[]");
  CHECK(json::dump(json::parse("{ }"), 4) == "{}");
  CHECK(json::dump(Value()) == "null");
}

TEST_CASE("json: doubles print so that they round-trip, and stay doubles") {
  for (double d : {0.1, 1.0 / 3.0, 2.5e-4, 1e300, -1e-300, 123456789.125, 5e-324, 1.7976931348623157e308, 1e16}) {
    CAPTURE(d);
    const Value back = json::parse(json::dump(Value(d)));
    CHECK(back.type() == Type::number);
    CHECK(back.as_double() == d);
  }
  CHECK(json::dump(Value(1.0)) == "1.0");
  CHECK(json::dump(Value(-0.0)) == "-0.0");
  CHECK(json::dump(Value(0.1)) == "0.1");
  CHECK(json::dump(Value(1e300)) == "1e+300");
  CHECK(json::dump(Value(2.5f)) == "2.5");
  CHECK(json::dump(Value(std::nan(""))) == "null");  // JSON has no NaN or infinity
  CHECK(json::dump(Value(INFINITY)) == "null");
  CHECK(json::dump(Value(std::numeric_limits<std::int64_t>::min())) == "-9223372036854775808");
  CHECK(json::dump(Value(std::numeric_limits<std::uint64_t>::max())) == "1.8446744073709552e+19");
}

TEST_CASE("json: builders, paths and equality") {
  Value v = Value::object();
  v.set("step", 10).set("loss", 0.25).set("tags", Value::array({"a", 1, nullptr}));
  v.set("step", 11);  // replaced in place
  CHECK(json::dump(v) == R"({"step":11,"loss":0.25,"tags":["a",1,null]})");
  Value nested;
  nested.set("inner", Value::object({{"k", true}}));
  v.set("outer", nested);
  CHECK(v.at("outer").at("inner").at("k").path() == "outer.inner.k");
  CHECK(v.at("tags").at(2).path() == "tags[2]");
  Value list;
  list.push_back(1).push_back(Value::object().set("x", 2));
  CHECK(list.size() == 2);
  CHECK(list.at(1).at("x").path() == "[1].x");
  CHECK(Value::object({{"a", 1}, {"a", 2}}) == Value::object({{"a", 2}}));  // a repeated key keeps the last
  // Equality: deep; objects unordered; integers never equal doubles.
  CHECK(json::parse(R"({"a":1,"b":[1,2]})") == json::parse(R"({"b":[1,2],"a":1})"));
  CHECK_FALSE(json::parse(R"({"a":1})") == json::parse(R"({"a":1.0})"));
  CHECK_FALSE(json::parse("[1,2]") == json::parse("[2,1]"));
  CHECK_FALSE(json::parse(R"({"a":1})") == json::parse(R"({"a":1,"b":2})"));
  CHECK(Value("x") == Value(std::string("x")));
  CHECK(Value(std::int8_t{-3}).as_int() == -3);
}

TEST_CASE("json: typed accessors name the key path in their errors") {
  const Value cfg = json::parse(R"({"args": {"dim": "16", "mult": 2.5, "n": 4, "flag": true, "list": [1, {"x": null}],
                                    "hidden": null, "big": 300}})",
                                "config");
  const Value& args = cfg.at("args");
  CHECK(args.path() == "config.args");
  CHECK_THROWS_WITH_AS(args.at("dim").as_int(), "[json] 'config.args.dim': expected an integer, got a string", Error);
  CHECK_THROWS_WITH_AS(args.at("mult").as_int(),
                       "[json] 'config.args.mult': expected an integer, got a floating-point number", Error);
  CHECK_THROWS_WITH_AS(args.at("n").as_string(), "[json] 'config.args.n': expected a string, got an integer", Error);
  CHECK_THROWS_WITH_AS(args.at("flag").as_double(), "[json] 'config.args.flag': expected a number, got a boolean",
                       Error);
  CHECK_THROWS_WITH_AS(args.at("n").as_bool(), "[json] 'config.args.n': expected a boolean, got an integer", Error);
  CHECK_THROWS_WITH_AS(args.at("n").as_array(), "[json] 'config.args.n': expected an array, got an integer", Error);
  CHECK_THROWS_WITH_AS(args.at("list").as_object(), "[json] 'config.args.list': expected an object, got an array",
                       Error);
  CHECK_THROWS_WITH_AS(args.at("list").at(1).at("x").as_int(),
                       "[json] 'config.args.list[1].x': expected an integer, got null", Error);
  CHECK_THROWS_WITH_AS(args.at("nope"), "[json] 'config.args': missing key 'nope'", Error);
  CHECK_THROWS_WITH_AS(args.at("list").at(5), "[json] 'config.args.list': index 5 out of range for 2 elements",
                       Error);
  CHECK_THROWS_WITH_AS(args.at("list").at(-1), "[json] 'config.args.list': index -1 out of range for 2 elements",
                       Error);
  CHECK_THROWS_WITH_AS(args.at("n").at("k"), "[json] 'config.args.n': expected an object, got an integer", Error);
  CHECK_THROWS_WITH_AS(args.at("n").size(), "[json] 'config.args.n': expected an array or an object, got an integer",
                       Error);
  CHECK_THROWS_WITH_AS(args.at("big").as<std::int8_t>(),
                       "[json] 'config.args.big': 300 does not fit in int8", Error);
  CHECK_THROWS_WITH_AS(json::parse("[1]").as_object(), "[json] expected an object, got an array", Error);
  CHECK_THROWS_WITH_AS(json::parse("{}").at("k"), "[json] missing key 'k'", Error);
  // as<T>, contains, get_or (absent or null -> the fallback).
  CHECK(args.at("n").as<int>() == 4);
  CHECK(args.at("n").as<double>() == 4.0);
  CHECK(args.at("big").as<std::uint16_t>() == 300);
  CHECK(args.at("dim").as<std::string>() == "16");
  CHECK(args.contains("mult"));
  CHECK_FALSE(args.contains("absent"));
  CHECK(args.get_or("n", 0) == 4);
  CHECK(args.get_or("absent", 7) == 7);
  CHECK(args.get_or<std::int64_t>("hidden", 0) == 0);
  CHECK(args.get_or("mult", 1.0) == 2.5);
  CHECK(args.get_or("flag", false));
  CHECK(args.get_or("dim", "x") == "16");
  CHECK(args.get_or("absent", "x") == "x");
  CHECK_THROWS_WITH_AS(args.get_or("dim", 0), "[json] 'config.args.dim': expected an integer, got a string", Error);
  CHECK(args.find("absent") == nullptr);
  CHECK(args.size() == 7);
}

TEST_CASE("json: every parse error names the line and column") {
  CHECK(parse_error("") == "[json] line 1, column 1: expected a value, got end of input");
  CHECK(parse_error("  \n  ") == "[json] line 2, column 3: expected a value, got end of input");
  CHECK(parse_error("{\n  \"a\": 1,\n  \"b\": [1, 2] \"c\"\n}") ==
        "[json] line 3, column 15: expected ',' or '}', got '\"'");
  CHECK(parse_error("{\"a\":1 \"b\":2}") == "[json] line 1, column 8: expected ',' or '}', got '\"'");
  CHECK(parse_error("{\"a\":1") == "[json] line 1, column 7: expected ',' or '}', got end of input");
  CHECK(parse_error("[1 2]") == "[json] line 1, column 4: expected ',' or ']', got '2'");
  CHECK(parse_error("[1,]") == "[json] line 1, column 4: expected a value, got ']'");
  CHECK(parse_error("[") == "[json] line 1, column 2: expected a value, got end of input");
  CHECK(parse_error("{,}") == "[json] line 1, column 2: expected a string key, got ','");
  CHECK(parse_error("{\"a\":1,}") == "[json] line 1, column 8: expected a string key, got '}'");
  CHECK(parse_error("{a:1}") == "[json] line 1, column 2: expected a string key, got 'a'");
  CHECK(parse_error("{\"a\" 1}") == "[json] line 1, column 6: expected ':', got '1'");
  CHECK(parse_error("{\"a\":1,\"a\":2}") == "[json] line 1, column 8: duplicate key 'a'");
  CHECK(parse_error("tru") == "[json] line 1, column 1: invalid literal (expected true, false or null)");
  CHECK(parse_error("nul") == "[json] line 1, column 1: invalid literal (expected true, false or null)");
  CHECK(parse_error("True") == "[json] line 1, column 1: expected a value, got 'T'");
  CHECK(parse_error("\"abc") == "[json] line 1, column 1: unterminated string");
  CHECK(parse_error("\"abc\\") == "[json] line 1, column 1: unterminated string");
  CHECK(parse_error("\"a\nb\"") == "[json] line 1, column 3: control character U+000A in a string (escape it)");
  CHECK(parse_error("\"\\x\"") == "[json] line 1, column 2: invalid escape '\\x'");
  CHECK(parse_error("\"\\u12G4\"") == "[json] line 1, column 2: invalid \\u escape: expected 4 hex digits");
  CHECK(parse_error("\"\\u12") == "[json] line 1, column 2: invalid \\u escape: expected 4 hex digits");
  CHECK(parse_error("\"\\ud800\"") == "[json] line 1, column 2: unpaired surrogate \\uD800");
  CHECK(parse_error("\"\\udc00\"") == "[json] line 1, column 2: unpaired surrogate \\uDC00");
  CHECK(parse_error("\"\\ud800\\u0041\"") == "[json] line 1, column 2: unpaired surrogate \\uD800 (followed by \\u0041)");
  CHECK(parse_error("\"\xFF\"") == "[json] line 1, column 2: invalid UTF-8 in a string");
  CHECK(parse_error("\"\xC3\"") == "[json] line 1, column 2: invalid UTF-8 in a string");      // truncated
  CHECK(parse_error("\"\xC0\xAF\"") == "[json] line 1, column 2: invalid UTF-8 in a string");  // overlong
  CHECK(parse_error("\"\xED\xA0\x80\"") == "[json] line 1, column 2: invalid UTF-8 in a string");  // surrogate
  CHECK(parse_error("01") == "[json] line 1, column 1: invalid number: leading zero");
  CHECK(parse_error("-") == "[json] line 1, column 2: invalid number: expected a digit, got end of input");
  CHECK(parse_error("-a") == "[json] line 1, column 2: invalid number: expected a digit, got 'a'");
  CHECK(parse_error("1.") == "[json] line 1, column 3: invalid number: expected a digit after '.', got end of input");
  CHECK(parse_error("1.e5") == "[json] line 1, column 3: invalid number: expected a digit after '.', got 'e'");
  CHECK(parse_error("1e") == "[json] line 1, column 3: invalid number: expected a digit in the exponent, got end of input");
  CHECK(parse_error("1e+") == "[json] line 1, column 4: invalid number: expected a digit in the exponent, got end of input");
  CHECK(parse_error("1e400") == "[json] line 1, column 1: number 1e400 is out of range for a double");
  CHECK_THROWS_WITH_AS(json::parse("-1" + std::string(400, '0')), Contains("is out of range for a double"), Error);
  CHECK(json::parse("0." + std::string(400, '0') + "1").as_double() == 0.0);  // underflow without an exponent
  CHECK(parse_error("+1") == "[json] line 1, column 1: expected a value, got '+'");
  CHECK(parse_error(".5") == "[json] line 1, column 1: expected a value, got '.'");
  CHECK(parse_error("[1] x") == "[json] line 1, column 5: unexpected 'x' after the value");
  CHECK(parse_error("1 2") == "[json] line 1, column 3: unexpected '2' after the value");
  CHECK(parse_error("truex") == "[json] line 1, column 5: unexpected 'x' after the value");
  CHECK(parse_error("\"\xC3\xA9\" x") == "[json] line 1, column 5: unexpected 'x' after the value");  // code points
  CHECK(parse_error("[1\x01]") == "[json] line 1, column 3: expected ',' or ']', got byte 0x01");
  CHECK(parse_error(std::string(600, '[')) == "[json] line 1, column 513: nesting deeper than 512 levels");
  CHECK(parse_error(std::string(512, '[') + std::string(512, ']')) == "(no error)");
  CHECK(parse_error("\xEF\xBB\xBF{}") == "[json] line 1, column 1: expected a value, got byte 0xEF");  // no BOM
}
