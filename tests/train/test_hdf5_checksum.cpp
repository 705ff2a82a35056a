// train/hdf5 additions for checkpoints: checksummed datasets (Fletcher32 on chunks, crc64 on
// every dataset), data_ranges, attribute listing and removal, read-write opening, is_hdf5.
#include <doctest/doctest.h>
#include <fmt/format.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "core/ops.h"
#include "train/crc64.h"
#include "train/hdf5.h"
#include "tests/test_files.h"

namespace core = moegrad::core;
namespace h5 = moegrad::h5;
namespace fs = std::filesystem;
using core::DType;
using core::Tensor;
using doctest::Contains;
using moegrad::Error;

namespace {

using moegrad::test::TempDir;
using moegrad::test::flip_byte;
using moegrad::test::have_h5py;



}  // namespace

TEST_CASE("hdf5: checksummed datasets round trip in every shape and dtype") {
  TempDir dir;
  const std::string path = dir.file("c.h5");
  core::Generator g(3);
  const Tensor big = core::randn({600, 700}, {}, &g);  // 1.6 MiB: several chunks
  const Tensor wide = core::randn({2, 300000}, {}, &g);  // a row over 1 MiB: chunks split a row
  const Tensor f64 = core::randn({3, 4}, {DType::f64}, &g);
  const Tensor i64 = core::from_vector<std::int64_t>({1, -2, 3}, {3});
  const Tensor u8 = core::from_vector<std::uint8_t>({7, 8}, {2});
  const Tensor scalar = core::scalar_tensor(-1.5);
  const Tensor empty = core::zeros({0, 4});
  const h5::WriteOptions sum{.checksum = true};
  {
    h5::File f = h5::File::create(path);
    f.write("big", big, sum);
    f.write("wide", wide, sum);
    f.write("f64", f64, sum);
    f.write("i64", i64, sum);
    f.write("u8", u8, sum);
    f.write("scalar", scalar, sum);
    f.write("empty", empty, sum);
    f.write("plain", i64);
  }
  const h5::File f = h5::File::open(path);
  CHECK(f.read("big").to_vector<float>() == big.to_vector<float>());
  CHECK(f.read("wide").to_vector<float>() == wide.to_vector<float>());
  // Strict (checkpoint) reading accepts what File::write stores, edge chunks included.
  for (const char* name : {"big", "wide", "f64", "i64", "u8", "scalar", "empty"}) {
    CAPTURE(name);
    CHECK_NOTHROW((void)f.read(name, {.strict = true}));
  }
  CHECK_THROWS_WITH_AS(f.read("plain", {.strict = true}), Contains("has no 'crc64' attribute"), Error);
  CHECK(f.read("f64").to_vector<double>() == f64.to_vector<double>());
  CHECK(f.read("i64").to_vector<std::int64_t>() == i64.to_vector<std::int64_t>());
  CHECK(f.read("u8").dtype() == DType::u8);
  CHECK(f.read("scalar").dim() == 0);
  CHECK(f.read("scalar").item<float>() == -1.5f);
  CHECK(f.read("empty").shape() == core::Shape{0, 4});
  CHECK(f.data_ranges("big").size() == 2);   // 600 x 700 f32 = 1.6 MiB in chunks of <= 1 MiB
  CHECK(f.data_ranges("wide").size() >= 3);
  CHECK(f.data_ranges("f64").size() == 1);
  CHECK(f.data_ranges("scalar").size() == 1);  // contiguous
  CHECK(f.data_ranges("plain").size() == 1);
  CHECK(f.data_ranges("plain")[0].size == 24);
  CHECK(f.data_ranges("empty").empty());
}

TEST_CASE("hdf5: a damaged checksummed dataset throws ChecksumError naming it") {
  TempDir dir;
  const std::string path = dir.file("c.h5");
  core::Generator g(4);
  const h5::WriteOptions sum{.checksum = true};
  {
    h5::File f = h5::File::create(path);
    f.write("/model/w", core::randn({8, 8}, {}, &g), sum);
    f.write("/model/n", core::scalar_tensor(3, {DType::i64}), sum);
    f.write("/plain", core::randn({8, 8}, {}, &g));
  }
  std::uint64_t w_at = 0, n_at = 0, plain_at = 0;
  {
    const h5::File f = h5::File::open(path);
    w_at = f.data_ranges("/model/w").at(0).offset;
    n_at = f.data_ranges("/model/n").at(0).offset;
    plain_at = f.data_ranges("/plain").at(0).offset;
  }
  flip_byte(path, w_at + 17);
  flip_byte(path, n_at);
  flip_byte(path, plain_at + 5);
  const h5::File f = h5::File::open(path);
  CHECK_THROWS_WITH_AS(f.read("/model/w"), Contains("checksum mismatch in dataset '/model/w' (Fletcher32)"),
                       h5::ChecksumError);
  CHECK_THROWS_WITH_AS(f.read("model/n"), Contains("checksum mismatch in dataset '/model/n' (crc64"), h5::ChecksumError);
  try {
    f.read("/model/w");
  } catch (const h5::ChecksumError& e) {
    CHECK(e.dataset() == "/model/w");
    CHECK(std::string(e.what()).find(path) != std::string::npos);
  }
  CHECK(f.read("/plain").numel() == 64);  // no checksum: the damage goes unnoticed
}

TEST_CASE("hdf5: root attributes list and remove; read-write opening; is_hdf5") {
  TempDir dir;
  const std::string path = dir.file("a.h5");
  {
    h5::File f = h5::File::create(path);
    f.set_attribute("b", 1);
    f.set_attribute("a", "x");
    f.write("t", core::zeros({2}));
  }
  {
    h5::File f = h5::File::open(path);
    CHECK(f.attribute_names() == std::vector<std::string>{"a", "b"});
    CHECK_THROWS_WITH_AS(f.remove_attribute("a"), Contains("is open read-only; cannot remove attribute 'a'"), Error);
  }
  {
    h5::File f = h5::File::open(path, h5::File::Mode::read_write);
    CHECK(f.remove_attribute("a"));
    CHECK_FALSE(f.remove_attribute("zzz"));
    f.set_attribute("c", 2.5);
    f.write("u", core::ones({3}));
  }
  const h5::File f = h5::File::open(path);
  CHECK(f.attribute_names() == std::vector<std::string>{"b", "c"});
  CHECK(f.list("/") == std::vector<std::string>{"t", "u"});

  CHECK(h5::is_hdf5(path));
  CHECK_FALSE(h5::is_hdf5(dir.file("missing.h5")));
  CHECK_FALSE(h5::is_hdf5(dir.path.string()));  // a folder
  std::ofstream(dir.file("text.h5")) << "hello, not HDF5\n";
  CHECK_FALSE(h5::is_hdf5(dir.file("text.h5")));
  std::ofstream(dir.file("empty.h5")).flush();
  CHECK_FALSE(h5::is_hdf5(dir.file("empty.h5")));
}

TEST_CASE("hdf5: h5py sees the Fletcher32 filter and the crc64 attribute") {
  if (!have_h5py()) {
    MESSAGE("/usr/bin/python3 with h5py not available; skipped");
    return;
  }
  TempDir dir;
  const std::string path = dir.file("c.h5");
  {
    h5::File f = h5::File::create(path);
    f.write("w", core::from_vector<float>({1, 2, 3, 4, 5, 6}, {2, 3}), {.checksum = true});
    f.write("s", core::scalar_tensor(-7, {DType::i64}), {.checksum = true});
    f.write("e", core::zeros({0}), {.checksum = true});
  }
  const std::string script = dir.file("check.py");
  std::ofstream(script) << "import sys, h5py, numpy as np\n"
                           "def crc64(data):  # CRC-64/XZ\n"
                           "    c = 0xFFFFFFFFFFFFFFFF\n"
                           "    for b in data:\n"
                           "        c ^= b\n"
                           "        for _ in range(8):\n"
                           "            c = (c >> 1) ^ (0xC96C5795D7870F42 if c & 1 else 0)\n"
                           "    return c ^ 0xFFFFFFFFFFFFFFFF\n"
                           "with h5py.File(sys.argv[1], 'r') as f:\n"
                           "    w = f['w']\n"
                           "    assert w.fletcher32 and w.chunks == (2, 3), (w.fletcher32, w.chunks)\n"
                           "    assert w[()].tolist() == [[1, 2, 3], [4, 5, 6]]\n"
                           "    s = f['s']\n"
                           "    assert s.shape == () and s[()] == -7 and not s.fletcher32\n"
                           "    assert s.attrs['crc64'] == crc64(np.int64(-7).astype('<i8').tobytes())\n"
                           "    assert s.attrs['crc64'].dtype == np.uint64\n"
                           "    assert w.attrs['crc64'] == crc64(w[()].astype('<f4').tobytes())\n"
                           "    assert f['e'].shape == (0,) and not f['e'].fletcher32 and f['e'].attrs['crc64'] == 0\n";
  CHECK(std::system(fmt::format("/usr/bin/python3 '{}' '{}'", script, path).c_str()) == 0);
}

TEST_CASE("crc64: CRC-64/XZ check value, streaming, and every length and alignment") {
  CHECK(moegrad::crc64("123456789", 9) == 0x995DC9BBDF1939FAull);
  CHECK(moegrad::crc64("", 0) == 0);
  // Streaming in pieces equals one call; liblzma's lzma_crc64 equals the byte loop.
  std::string data;
  for (int i = 0; i < 300; ++i) data.push_back(static_cast<char>(i * 37 + 11));
  auto bytewise = [](const char* p, std::size_t n) {
    std::uint64_t c = ~std::uint64_t{0};
    for (std::size_t i = 0; i < n; ++i) {
      c ^= static_cast<unsigned char>(p[i]);
      for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xC96C5795D7870F42ull ^ (c >> 1) : c >> 1;
    }
    return ~c;
  };
  for (std::size_t start : {0, 1, 3, 7}) {
    for (std::size_t n : {0, 1, 7, 8, 9, 64, 200}) {
      const std::uint64_t whole = moegrad::crc64(data.data() + start, n);
      CHECK(whole == bytewise(data.data() + start, n));
      const std::size_t half = n / 2;
      CHECK(moegrad::crc64(data.data() + start + half, n - half, moegrad::crc64(data.data() + start, half)) == whole);
    }
  }
}

TEST_CASE("hdf5: sealed files: verify_seal finds any change, truncation or appended byte") {
  TempDir dir;
  const std::string sealed = dir.file("s.h5"), plain = dir.file("p.h5");
  h5::write_atomically(sealed, [](h5::File& f) { f.write("w", core::ones({16}), {.checksum = true}); });
  {
    h5::File f = h5::File::create(plain);
    f.write("w", core::ones({16}));
  }
  CHECK(h5::verify_seal(sealed) == h5::Seal::verified);
  CHECK(h5::verify_seal(plain) == h5::Seal::absent);
  CHECK(h5::is_hdf5(sealed));
  CHECK(h5::File::open(sealed).read("w").to_vector<float>() == std::vector<float>(16, 1.0f));
  const auto size = fs::file_size(sealed);

  SUBCASE("a byte after the header") {
    flip_byte(sealed, size - 3);
    CHECK_THROWS_WITH_AS(h5::verify_seal(sealed), Contains("checksum mismatch over the file (crc64 "), h5::ChecksumError);
    h5::seal(sealed);  // a tool that changes a sealed file on purpose seals it again
    CHECK(h5::verify_seal(sealed) == h5::Seal::verified);
  }
  SUBCASE("the header") {
    flip_byte(sealed, 0);
    CHECK_THROWS_WITH_AS(h5::verify_seal(sealed), Contains("the file checksum header in its first 512 bytes is damaged"),
                         Error);
  }
  SUBCASE("the header's padding") {
    flip_byte(sealed, 300);
    CHECK_THROWS_WITH_AS(h5::verify_seal(sealed), Contains("header in its first 512 bytes is damaged"), Error);
  }
  SUBCASE("truncated") {
    fs::resize_file(sealed, size - 1);
    const std::string want = fmt::format("holds {} bytes after its header, which says {} (truncated)", size - 513, size - 512);
    CHECK_THROWS_WITH_AS(h5::verify_seal(sealed), Contains(want.c_str()), Error);
  }
  SUBCASE("appended") {
    std::ofstream(sealed, std::ios::app) << "x";
    CHECK_THROWS_WITH_AS(h5::verify_seal(sealed), Contains("(bytes were appended)"), Error);
  }
  SUBCASE("a file without a user block cannot be sealed") {
    CHECK_THROWS_WITH_AS(h5::seal(plain), Contains("it has no 512-byte user block"), Error);
  }
}
