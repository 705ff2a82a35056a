// train/json_read: the reading layer on nlohmann-json. Errors name the file and the path in it
// and stay one short line; integers stay exact; a float is an integer only when integral and in
// range; non-finite numbers, repeated keys, deep nesting, oversized files, non-regular files
// and non-object roots are errors.
#include <doctest/doctest.h>

#include <cstdint>
#include <fstream>
#include <limits>
#include <string>

#include "core/error.h"
#include "tests/test_files.h"
#include "train/json_read.h"

namespace json = moegrad::json;
using json::Json;
using json::Node;
using moegrad::Error;

namespace {

using moegrad::test::error_of;

void write(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary);
  out << text;
}

}  // namespace

TEST_CASE("json_read: integers stay exact; floats are integers only when integral and in range") {
  const Json doc = json::parse(R"({"big": 9007199254740993, "max": 9223372036854775807, "min": -9223372036854775808,
                                   "u": 18446744073709551615, "e3": 1e3, "half": 1.5, "huge": 1e300, "neg": -4})");
  const Node n(doc, "config", "c.json");
  CHECK(n.at("big").as_int() == 9007199254740993LL);  // 2^53 + 1: not a double
  CHECK(n.at("max").as_int() == std::numeric_limits<std::int64_t>::max());
  CHECK(n.at("min").as_int() == std::numeric_limits<std::int64_t>::min());
  CHECK(n.at("u").as_uint() == std::numeric_limits<std::uint64_t>::max());
  CHECK(n.at("e3").as_int() == 1000);
  CHECK(n.at("e3").as<std::int32_t>() == 1000);
  CHECK(n.at("half").as_double() == 1.5);
  CHECK(n.at("big").as_double() == 9007199254740992.0);
  CHECK(error_of([&] { n.at("half").as_int(); }) == "[config] 'c.json': 'half': expected an integer, got 1.5");
  CHECK(error_of([&] { n.at("huge").as_int(); }) == "[config] 'c.json': 'huge': expected an integer, got 1e+300");
  CHECK(error_of([&] { n.at("u").as_int(); }) ==
        "[config] 'c.json': 'u': integer 18446744073709551615 is out of range (at most 9223372036854775807)");
  CHECK(error_of([&] { n.at("neg").as_uint(); }) == "[config] 'c.json': 'neg': must be >= 0, got -4");
  CHECK(error_of([&] { n.at("max").as<std::int32_t>(); }) ==
        "[config] 'c.json': 'max': must be in [-2147483648, 2147483647], got 9223372036854775807");
  CHECK(error_of([&] { n.at("e3").as_int(1, 64); }) == "[config] 'c.json': 'e3': must be in [1, 64], got 1000");
  CHECK(error_of([&] { n.at("half").as_double(0, 1); }) == "[config] 'c.json': 'half': must be in [0, 1], got 1.5");
}

TEST_CASE("json_read: errors name the source and the path; long values are elided") {
  const Json doc = json::parse(R"({"model": {"dim": "16", "list": [1, {"x": null}]}, "flag": true})");
  const Node root(doc, "config", "config.json");
  const Node model = root.at("model");
  CHECK(model.path() == "model");
  CHECK(error_of([&] { model.at("dim").as_int(); }) ==
        "[config] 'config.json': 'model.dim': expected an integer, got a string");
  CHECK(error_of([&] { model.at("list").at(1).at("x").as_int(); }) ==
        "[config] 'config.json': 'model.list[1].x': expected an integer, got null");
  CHECK(error_of([&] { root.at("flag").as_string(); }) == "[config] 'config.json': 'flag': expected a string, got true");
  CHECK(error_of([&] { model.at("nope"); }) == "[config] 'config.json': 'model': missing key 'nope'");
  CHECK(error_of([&] { model.at("list").at(5); }) ==
        "[config] 'config.json': 'model.list': index 5 out of range for 2 elements");
  CHECK(error_of([&] { model.at("dim").at("k"); }) ==
        "[config] 'config.json': 'model.dim': expected an object, got a string");
  // A root path, as the fixtures use ("args.dim"), without a source.
  const Node args(doc.at("model"), "fixture", "", "args");
  CHECK(error_of([&] { args.at("dim").as_int(); }) == "[fixture] 'args.dim': expected an integer, got a string");
  CHECK(!root.find("absent").has_value());
  CHECK(root.members().size() == 2);
  CHECK(model.at("list").as_array().size() == 2);
  // Elision: a message quoting a long value stays short.
  CHECK(json::elide("short") == "short");
  const std::string long_text(10000, 'x');
  CHECK(json::elide(long_text) == std::string(60, 'x') + "... (10000 bytes)");
  const Json long_key = json::parse("{\"" + long_text + "\": 1}");
  const std::string e = error_of([&] { Node(long_key, "config", "c.json").at("y" + long_text); });
  CHECK(e.size() < 200);
}

TEST_CASE("json_read: parse errors give the source, line and column on one short line") {
  CHECK(error_of([] { json::parse("{\n  \"a\": 1,\n  \"b\": x\n}", "c.json", "config"); }) ==
        "[config] 'c.json': line 3, column 8: syntax error while parsing value - invalid literal; last read: '\"b\": x'");
  CHECK(error_of([] { json::parse(""); }) == "[json] line 1, column 1: syntax error while parsing value - unexpected "
                                             "end of input; expected '[', '{', or a literal");
  CHECK(error_of([] { json::parse("[1, 2"); }) ==
        "[json] line 1, column 6: syntax error while parsing array - unexpected end of input; expected ']'");
  // An unterminated 1 MB string: the token is elided.
  const std::string e = error_of([] { json::parse("{\"a\": \"" + std::string(1000000, 'z')); });
  CHECK(e.rfind("[json] line 1, column ", 0) == 0);
  CHECK(e.size() < 300);
  CHECK(e.find('\n') == std::string::npos);
}

TEST_CASE("json_read: non-finite numbers, repeated keys and deep nesting are rejected") {
  CHECK(error_of([] { json::parse(R"({"lr": 1e400})", "c.json", "config"); }) ==
        "[config] 'c.json': number overflow parsing '1e400' (numbers must be finite doubles)");
  CHECK(error_of([] { json::parse(R"([1, -1e999])"); }) ==
        "[json] number overflow parsing '-1e999' (numbers must be finite doubles)");
  CHECK(error_of([] { json::parse("NaN"); }) != "(no error)");
  CHECK(error_of([] { json::parse("Infinity"); }) != "(no error)");
  CHECK(json::parse("1e-400").get<double>() == 0.0);  // underflow is zero, not an error
  CHECK(error_of([] { json::parse(R"({"a": 1, "b": {"a": 2}, "a": 3})", "c.json", "config"); }) ==
        "[config] 'c.json': duplicate key 'a'");
  CHECK(json::parse(R"({"a": {"a": 1}, "b": {"a": 2}})").size() == 2);  // the same key in two objects
  CHECK(error_of([] { json::parse(std::string(100000, '[')); }) == "[json] nested deeper than 64 arrays/objects");
  CHECK(json::parse(std::string(60, '[') + std::string(60, ']')).is_array());
}

TEST_CASE("json_read: dump keeps the order members were set in and the kinds of numbers") {
  Json j;
  j["z"] = 1;
  j["a"] = 2.0;
  j["m"] = {{"k", Json::array()}};
  j["u"] = std::uint64_t{18446744073709551615ULL};
  CHECK(json::dump(j) == R"({"z":1,"a":2.0,"m":{"k":[]},"u":18446744073709551615})");
  CHECK(json::dump(json::parse(json::dump(j))) == json::dump(j));
  CHECK(json::dump(Json(0.1)) == "0.1");
  CHECK(json::dump(Json(std::nan(""))) == "null");
  CHECK(json::dump(Json("bad \xFF byte")) == "\"bad \xEF\xBF\xBD byte\"");  // invalid UTF-8 is replaced, not thrown
  CHECK(std::string(json::type_name(Json(1))) == "an integer");
  CHECK(std::string(json::type_name(Json(1.0))) == "a floating-point number");
}

TEST_CASE("json_read: files are bounded, regular, and (for options) objects") {
  moegrad::test::TempDir tmp;
  const std::string good = tmp.file("good.json");
  write(good, R"({"steps": 10})");
  CHECK(json::read_object_file(good, "config").at("steps") == 10);
  // The root must be an object: [], null and 3 name the file.
  for (const auto& [text, kind] : {std::pair{"[]", "an array"}, {"null", "null"}, {"3", "an integer"}}) {
    write(tmp.file("bad.json"), text);
    CHECK(error_of([&] { json::read_object_file(tmp.file("bad.json"), "config"); }) ==
          fmt::format("[config] '{}': expected a JSON object {{...}}, got {}", tmp.file("bad.json"), kind));
  }
  // A directory, a missing file, a device.
  CHECK(error_of([&] { json::read_file(tmp.path.string(), "config"); }) ==
        fmt::format("[config] '{}': is a directory, not a JSON file", tmp.path.string()));
  CHECK(error_of([&] { json::read_file(tmp.file("missing.json"), "config"); }) ==
        fmt::format("[config] '{}': cannot read: No such file or directory", tmp.file("missing.json")));
  CHECK(error_of([] { json::read_file("/dev/zero", "config"); }) == "[config] '/dev/zero': not a regular file");
  // Size: the limit itself is fine, one byte more is not (and is not read whole).
  const std::string padded = tmp.file("padded.json");
  write(padded, "{}" + std::string(98, ' '));
  CHECK(json::read_file(padded, "config", 100).is_object());
  write(padded, "{}" + std::string(99, ' '));
  CHECK(error_of([&] { json::read_file(padded, "config", 100); }) ==
        fmt::format("[config] '{}': larger than 100 bytes (a JSON file of options must be small)", padded));
  // A parse error names the file.
  write(tmp.file("broken.json"), "{\"a\": }");
  const std::string broken = error_of([&] { json::read_file(tmp.file("broken.json"), "config"); });
  CHECK(broken.rfind(fmt::format("[config] '{}': line 1, column 7: syntax error", tmp.file("broken.json")), 0) == 0);
}
