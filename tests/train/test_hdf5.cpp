// train/hdf5: tensors, groups, listings, attributes, state_dicts, errors and atomic writes.
#include <doctest/doctest.h>
#include <fmt/format.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <limits>
#include <sstream>
#include <string>

#include "core/ops.h"
#include "layers/st_expert.h"
#include "train/hdf5.h"
#include "tests/test_files.h"

namespace core = moegrad::core;
namespace h5 = moegrad::h5;
namespace nn = moegrad::nn;
namespace fs = std::filesystem;
using core::DType;
using core::Shape;
using core::Tensor;
using doctest::Contains;
using moegrad::Error;

namespace {

// A fresh directory per use, removed afterwards (pid-qualified: ctest runs cases in parallel).
using moegrad::test::TempDir;
using moegrad::test::have_h5py;

template <class T> void check_same(const Tensor& got, const Tensor& want, DType dtype) {
  CHECK(got.dtype() == dtype);
  CHECK(got.shape() == want.shape());
  CHECK(got.is_contiguous());
  CHECK(got.to_vector<T>() == want.to_vector<T>());
}

std::string read_text(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

bool have_command(const std::string& cmd) {
  return std::system(fmt::format("command -v {} > /dev/null 2>&1", cmd).c_str()) == 0;
}


}  // namespace

TEST_CASE("hdf5: tensors round trip with their dtype, including 0-d and strided views") {
  TempDir dir;
  const std::string path = dir.file("t.h5");
  core::Generator g(5);
  const Tensor f32 = core::randn({2, 3, 4}, {}, &g);
  const Tensor f64 = core::randn({5}, {DType::f64}, &g);
  const Tensor i64 = core::from_vector<std::int64_t>(
      {0, -1, std::numeric_limits<std::int64_t>::max(), std::numeric_limits<std::int64_t>::min(), 9007199254740993LL, 7},
      {3, 2});
  const Tensor u8 = core::from_vector<std::uint8_t>({0, 1, 127, 128, 255, 3}, {6});
  const Tensor b8 = core::from_vector<bool>({true, false, true}, {3});
  const Tensor scalar = core::scalar_tensor(2.5);
  const Tensor scalar_i = core::scalar_tensor(-4, {DType::i64});
  const Tensor base = core::randn({4, 6}, {}, &g);
  const Tensor transposed = core::transpose(base, 0, 1);           // [6, 4], strides (1, 6)
  const Tensor sliced = core::slice(base, 1, 1, 6, 2);             // [4, 3], offset 1
  const Tensor expanded = core::expand(core::narrow(base, 0, 0, 1), {3, 6});  // stride 0
  const Tensor empty = core::zeros({0, 3});
  {
    h5::File f = h5::File::create(path);
    CHECK(f.path() == path);
    f.write("f32", f32);
    f.write("/f64", f64);
    f.write("i64", i64);
    f.write("u8", u8);
    f.write("b8", b8);
    f.write("scalar", scalar);
    f.write("scalar_i", scalar_i);
    f.write("views/transposed", transposed);
    f.write("views/sliced", sliced);
    f.write("views/expanded", expanded);
    f.write("empty", empty);
  }
  const h5::File f = h5::File::open(path);
  check_same<float>(f.read("f32"), f32, DType::f32);
  check_same<double>(f.read("f64"), f64, DType::f64);
  check_same<std::int64_t>(f.read("i64"), i64, DType::i64);
  check_same<std::uint8_t>(f.read("u8"), u8, DType::u8);
  check_same<std::uint8_t>(f.read("b8"), b8, DType::u8);  // bool is stored as uint8
  const Tensor s = f.read("/scalar");
  CHECK(s.dim() == 0);
  CHECK(s.dtype() == DType::f32);
  CHECK(s.item<float>() == 2.5f);
  CHECK(f.read("scalar_i").dim() == 0);
  CHECK(f.read("scalar_i").item<std::int64_t>() == -4);
  check_same<float>(f.read("views/transposed"), transposed, DType::f32);
  check_same<float>(f.read("views/sliced"), sliced, DType::f32);
  check_same<float>(f.read("views/expanded"), expanded, DType::f32);
  CHECK(f.read("empty").shape() == Shape{0, 3});
}

TEST_CASE("hdf5: writing creates groups, replaces datasets; exists and list") {
  TempDir dir;
  const std::string path = dir.file("g.h5");
  h5::File f = h5::File::create(path);
  f.write("/a/b/c", core::ones({2}));
  f.write("a/b/d", core::ones({1}));
  f.write("a/x", core::ones({1}));
  f.write("top.weight", core::ones({1}));
  f.write("a/b/c", core::zeros({3, 3}));  // replaced
  f.create_group("empty/group");
  CHECK(f.read("a/b/c").shape() == Shape{3, 3});
  CHECK(f.exists("/"));
  CHECK(f.exists("a"));
  CHECK(f.exists("/a/b"));
  CHECK(f.exists("a/b/c"));
  CHECK(f.exists("empty/group"));
  CHECK_FALSE(f.exists("a/y"));
  CHECK_FALSE(f.exists("nope/deeper"));
  CHECK_FALSE(f.exists("a/b/c/under_a_dataset"));
  CHECK(f.list("/") == std::vector<std::string>{"top.weight"});
  CHECK(f.list("/", true) == std::vector<std::string>{"a/b/c", "a/b/d", "a/x", "top.weight"});
  CHECK(f.list("a") == std::vector<std::string>{"x"});
  CHECK(f.list("/a/", true) == std::vector<std::string>{"b/c", "b/d", "x"});
  CHECK(f.list("empty", true).empty());
  CHECK_THROWS_WITH_AS(f.list("missing"), fmt::format("[hdf5] '{}' has no group 'missing'", path).c_str(), Error);
  CHECK_THROWS_WITH_AS(f.list("a/x"), fmt::format("[hdf5] '{}': 'a/x' is not a group", path).c_str(), Error);
  CHECK_THROWS_WITH_AS(f.write("a", core::ones({1})), Contains("a group of that name exists"), Error);
  CHECK_THROWS_WITH_AS(f.write("a/x/y", core::ones({1})), Contains("'/a/x' exists and is not a group"), Error);
  CHECK_THROWS_WITH_AS(f.write("/", core::ones({1})), Contains("is not a dataset name"), Error);
  CHECK_THROWS_WITH_AS(f.write("u", Tensor()), Contains("cannot write an undefined tensor to 'u'"), Error);
}

TEST_CASE("hdf5: root attributes (strings, integers, doubles)") {
  TempDir dir;
  const std::string path = dir.file("attrs.h5");
  {
    h5::File f = h5::File::create(path);
    f.set_attribute("format", "moegrad-checkpoint");
    f.set_attribute("config_json", std::string("{\"dim\": 16, \"name\": \"caf\xC3\xA9\"}"));
    f.set_attribute("format_version", 1);
    f.set_attribute("step", std::int64_t{123456789012});
    f.set_attribute("lr", 2.5e-4);
    f.set_attribute("replaced", "text");
    f.set_attribute("replaced", 7u);  // a different type under the same name
    f.set_attribute("empty", "");
  }
  const h5::File f = h5::File::open(path);
  CHECK(f.attribute_string("format") == "moegrad-checkpoint");
  CHECK(f.attribute_string("config_json") == "{\"dim\": 16, \"name\": \"caf\xC3\xA9\"}");
  CHECK(f.attribute_string("empty") == "");
  CHECK(f.attribute_number("format_version") == 1.0);
  CHECK(f.attribute_number("step") == 123456789012.0);
  CHECK(f.attribute_number("lr") == 2.5e-4);
  CHECK(f.attribute_number("replaced") == 7.0);
  CHECK_FALSE(f.attribute_string("absent").has_value());
  CHECK_FALSE(f.attribute_number("absent").has_value());
  CHECK_THROWS_WITH_AS(f.attribute_number("format"),
                       fmt::format("[hdf5] '{}': attribute 'format' is a string, not a number", path).c_str(), Error);
  CHECK_THROWS_WITH_AS(f.attribute_string("lr"),
                       fmt::format("[hdf5] '{}': attribute 'lr' is a float, not a string", path).c_str(), Error);
}

TEST_CASE("hdf5: state_dict round trip under /model (dotted keys, sorted)") {
  TempDir dir;
  const std::string path = dir.file("sd.h5");
  core::Generator g(3);
  nn::st::Expert a(6, 4, true, /*prenorm=*/true, {}, &g);
  {
    h5::File f = h5::File::create(path);
    h5::write_state_dict(f, "/model", a.state_dict());
    h5::write_state_dict(f, "/empty", nn::StateDict{});
  }
  const h5::File f = h5::File::open(path);
  CHECK(f.exists("/model/net.1.weight"));
  const nn::StateDict sd = h5::read_state_dict(f);
  CHECK(sd.keys() == std::vector<std::string>{"net.0.gamma", "net.1.bias", "net.1.weight", "net.2.mult_bias",
                                              "net.3.bias", "net.3.weight"});
  nn::st::Expert b(6, 4, true, true);
  b.load_state_dict(sd);  // strict
  for (const auto& [key, value] : a.state_dict()) {
    CAPTURE(key);
    CHECK(b.state_dict().at(key).to_vector<float>() == value.to_vector<float>());
  }
  CHECK(h5::read_state_dict(f, "empty").empty());
  CHECK_THROWS_WITH_AS(h5::read_state_dict(f, "/optimizer"), Contains("has no group '/optimizer'"), Error);
}

TEST_CASE("hdf5: errors name the file, the object and HDF5's reason") {
  TempDir dir;
  const std::string missing = dir.file("x.h5");
  CHECK_THROWS_WITH_AS(h5::File::open(missing), Contains(fmt::format("[hdf5] cannot open '{}': ", missing).c_str()), Error);
  CHECK_THROWS_WITH_AS(h5::File::open(missing), Contains("errno = 2"), Error);
  CHECK_THROWS_WITH_AS(h5::File::create(dir.file("no/such/dir.h5")), Contains("[hdf5] cannot create"), Error);

  const std::string text = dir.file("not_hdf5.h5");
  std::ofstream(text) << "this is not an HDF5 file\n";
  CHECK_THROWS_WITH_AS(h5::File::open(text), Contains(fmt::format("[hdf5] cannot open '{}': ", text).c_str()), Error);
  CHECK_THROWS_WITH_AS(h5::File::open(text), Contains("signature"), Error);

  const std::string path = dir.file("w.h5");
  {
    h5::File f = h5::File::create(path);
    f.write("/model/experts.w1", core::ones({2}));
    f.close();
    f.close();  // a second close does nothing
    CHECK_FALSE(f.is_open());
    CHECK_THROWS_WITH_AS(f.read("/model/experts.w1"), fmt::format("[hdf5] '{}' is closed (read)", path).c_str(), Error);
  }
  h5::File f = h5::File::open(path);
  CHECK_THROWS_WITH_AS(f.read("/model/gate.weight"),
                       fmt::format("[hdf5] '{}' has no dataset '/model/gate.weight'", path).c_str(), Error);
  CHECK_THROWS_WITH_AS(f.read("/model"), fmt::format("[hdf5] '{}': '/model' is a group, not a dataset", path).c_str(),
                       Error);
  CHECK_THROWS_WITH_AS(f.write("y", core::ones({1})),
                       fmt::format("[hdf5] '{}' is open read-only; cannot write dataset 'y'", path).c_str(), Error);
  CHECK_THROWS_WITH_AS(f.create_group("g"), Contains("is open read-only; cannot create group 'g'"), Error);
  CHECK_THROWS_WITH_AS(f.set_attribute("a", 1), Contains("is open read-only; cannot set attribute 'a'"), Error);
  // Moving transfers the open file.
  h5::File g = std::move(f);
  CHECK(g.read("/model/experts.w1").numel() == 2);
  CHECK_FALSE(f.is_open());  // NOLINT(bugprone-use-after-move): a moved-from File is closed
}

TEST_CASE("hdf5: write_atomically replaces the file or leaves it untouched") {
  TempDir dir;
  const std::string path = dir.file("ckpt.h5");
  h5::write_atomically(path, [](h5::File& f) {
    f.write("step", core::scalar_tensor(1, {DType::i64}));
    f.set_attribute("complete", 1);
  });
  CHECK(dir.entries() == std::vector<std::string>{"ckpt.h5"});
  CHECK(h5::File::open(path).read("step").item<std::int64_t>() == 1);

  // fill throws halfway: the old file is intact and no temporary file is left.
  CHECK_THROWS_WITH_AS(h5::write_atomically(path,
                                            [](h5::File& f) {
                                              f.write("step", core::scalar_tensor(2, {DType::i64}));
                                              throw Error("[test] interrupted");
                                            }),
                       "[test] interrupted", Error);
  CHECK(dir.entries() == std::vector<std::string>{"ckpt.h5"});
  CHECK(h5::File::open(path).read("step").item<std::int64_t>() == 1);

  // An HDF5 error inside fill also cleans up.
  CHECK_THROWS_WITH_AS(h5::write_atomically(path, [](h5::File& f) { f.read("missing"); }), Contains("has no dataset"),
                       Error);
  CHECK(dir.entries() == std::vector<std::string>{"ckpt.h5"});

  // A new file that fails never appears.
  const std::string fresh = dir.file("fresh.h5");
  CHECK_THROWS_AS(h5::write_atomically(fresh, [](h5::File&) { throw std::runtime_error("no"); }), std::runtime_error);
  CHECK_FALSE(fs::exists(fresh));
  CHECK(dir.entries() == std::vector<std::string>{"ckpt.h5"});

  // Success replaces the content.
  h5::write_atomically(path, [](h5::File& f) { f.write("step", core::scalar_tensor(3, {DType::i64})); });
  CHECK(h5::File::open(path).read("step").item<std::int64_t>() == 3);
  CHECK(dir.entries() == std::vector<std::string>{"ckpt.h5"});
  CHECK_THROWS_WITH_AS(h5::write_atomically(dir.file("missing_dir/x.h5"), [](h5::File&) {}),
                       Contains("cannot create its temporary file"), Error);
}

TEST_CASE("hdf5: the same content gives byte-identical files (no timestamps)") {
  TempDir dir;
  auto fill = [](h5::File& f) {
    f.write("/model/w", core::arange(6.0, 12.0, 1.0, {DType::f32}));
    f.write("/train/step", core::scalar_tensor(4, {DType::i64}));
    f.set_attribute("format", "x");
  };
  h5::write_atomically(dir.file("a.h5"), fill);
  h5::write_atomically(dir.file("b.h5"), fill);
  CHECK(read_text(dir.file("a.h5")) == read_text(dir.file("b.h5")));
}

TEST_CASE("hdf5: files written are readable by h5dump") {
  if (!have_command("h5dump")) {
    MESSAGE("h5dump not installed; skipped");
    return;
  }
  TempDir dir;
  const std::string path = dir.file("dump.h5");
  h5::write_atomically(path, [](h5::File& f) {
    f.write("/model/net.0.weight", core::ones({2, 2}));
    f.write("/train/step", core::scalar_tensor(9, {DType::i64}));
    f.write("/mask", core::from_vector<bool>({true, false}, {2}));
    f.write("/d", core::zeros({1}, {DType::f64}));
    f.set_attribute("config_json", "{}");
  });
  const std::string out = dir.file("dump.txt");
  REQUIRE(std::system(fmt::format("h5dump '{}' > '{}' 2>&1", path, out).c_str()) == 0);
  const std::string text = read_text(out);
  for (const char* want : {"DATASET \"net.0.weight\"", "H5T_IEEE_F32LE", "H5T_STD_I64LE", "H5T_STD_U8LE",
                           "H5T_IEEE_F64LE", "DATASPACE  SCALAR", "H5T_CSET_UTF8", "(0): 9"}) {
    CAPTURE(want);
    CHECK(text.find(want) != std::string::npos);
  }
}

TEST_CASE("hdf5: h5py's types read as tensors, and h5py reads our files") {
  if (!have_h5py()) {
    MESSAGE("/usr/bin/python3 with h5py not available; skipped");
    return;
  }
  TempDir dir;
  const std::string theirs = dir.file("h5py.h5");
  const std::string script = dir.file("write.py");
  std::ofstream(script) << "import sys, h5py, numpy as np\n"
                           "with h5py.File(sys.argv[1], 'w') as f:\n"
                           "    f['bool'] = np.array([True, False, True])\n"
                           "    f['i32'] = np.array([[1, -2], [3, 4]], dtype=np.int32)\n"
                           "    f['u16'] = np.array([65535], dtype=np.uint16)\n"
                           "    f['u8'] = np.array([200], dtype=np.uint8)\n"
                           "    f['f16'] = np.array([0.5, -2.0], dtype=np.float16)\n"
                           "    f['f64'] = np.float64(1.25)\n"
                           "    f['text'] = 'not a tensor'\n"
                           "    f.attrs['vlen'] = 'caf\\u00e9'\n"
                           "    f.attrs['fixed'] = np.bytes_(b'abc')\n"
                           "    f.attrs['i'] = np.int32(7)\n"
                           "    f.attrs['flag'] = True\n";
  REQUIRE(std::system(fmt::format("/usr/bin/python3 '{}' '{}'", script, theirs).c_str()) == 0);
  const h5::File f = h5::File::open(theirs);
  CHECK(f.read("bool").dtype() == DType::u8);
  CHECK(f.read("bool").to_vector<int>() == std::vector<int>{1, 0, 1});
  CHECK(f.read("i32").dtype() == DType::i64);
  CHECK(f.read("i32").to_vector<std::int64_t>() == std::vector<std::int64_t>{1, -2, 3, 4});
  CHECK(f.read("u16").to_vector<std::int64_t>() == std::vector<std::int64_t>{65535});
  CHECK(f.read("u8").dtype() == DType::u8);
  CHECK(f.read("f16").dtype() == DType::f32);
  CHECK(f.read("f16").to_vector<float>() == std::vector<float>{0.5f, -2.0f});
  CHECK(f.read("f64").dim() == 0);
  CHECK(f.read("f64").item<double>() == 1.25);
  CHECK_THROWS_WITH_AS(f.read("text"), Contains("'text' has type string; only float, integer and bool"), Error);
  CHECK(f.attribute_string("vlen") == "caf\xC3\xA9");
  CHECK(f.attribute_string("fixed") == "abc");
  CHECK(f.attribute_number("i") == 7.0);
  CHECK_THROWS_WITH_AS(f.attribute_number("flag"), Contains("attribute 'flag' is an enum, not a number"), Error);

  // The other way: h5py reads what we write, attributes as str.
  const std::string ours = dir.file("ours.h5");
  h5::write_atomically(ours, [](h5::File& g) {
    g.write("/model/w", core::from_vector<float>({1, 2, 3, 4}, {2, 2}));
    g.write("/n", core::scalar_tensor(5, {DType::i64}));
    g.set_attribute("format", "caf\xC3\xA9");
    g.set_attribute("version", 2);
  });
  const std::string check = dir.file("read.py");
  std::ofstream(check) << "import sys, h5py\n"
                          "with h5py.File(sys.argv[1], 'r') as f:\n"
                          "    assert f['model/w'][()].tolist() == [[1, 2], [3, 4]], f['model/w'][()]\n"
                          "    assert f['model/w'].dtype == 'float32'\n"
                          "    assert f['n'][()] == 5 and f['n'].dtype == 'int64' and f['n'].shape == ()\n"
                          "    assert f.attrs['format'] == 'caf\\u00e9', f.attrs['format']\n"
                          "    assert f.attrs['version'] == 2\n";
  CHECK(std::system(fmt::format("/usr/bin/python3 '{}' '{}'", check, ours).c_str()) == 0);
}
