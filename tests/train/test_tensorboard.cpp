// train/tfrecord and train/png, the pieces of --tensorboard's event files: CRC-32C against
// published vectors (RFC 3720 B.4), the TFRecord framing byte for byte (the expected bytes come
// from TensorBoard's own Python masked_crc32c), the record file, a writer's first record, and
// the PNG container read back by libpng. tests/tools/check_tensorboard.py reads whole runs with
// TensorBoard itself.
#include <doctest/doctest.h>
#include <png.h>

#include <cstdint>
#include <string>
#include <vector>

#include "core/error.h"
#include "tests/test_files.h"
#include "train/png.h"
#include "train/tensorboard.h"
#include "train/tfrecord.h"

namespace train = moegrad::train;
using moegrad::test::error_of;
using moegrad::test::read_bytes;
using moegrad::test::TempDir;

namespace {

std::uint32_t crc_of(const std::vector<std::uint8_t>& v) { return train::crc32c(v.data(), v.size()); }

std::uint32_t be32(const std::string& s, std::size_t at) {
  std::uint32_t v = 0;
  for (std::size_t i = 0; i < 4; ++i) v = (v << 8) | static_cast<unsigned char>(s[at + i]);
  return v;
}

std::string hex(const std::string& s) {
  std::string out;
  for (const unsigned char c : s) out += fmt::format("{:02x}", c);
  return out;
}

}  // namespace

TEST_CASE("crc32c: the Castagnoli check value and RFC 3720's vectors") {
  const std::string check = "123456789";
  CHECK(train::crc32c(check.data(), check.size()) == 0xE3069283u);
  CHECK(train::crc32c(nullptr, 0) == 0u);
  CHECK(crc_of(std::vector<std::uint8_t>(32, 0x00)) == 0x8A9136AAu);
  CHECK(crc_of(std::vector<std::uint8_t>(32, 0xFF)) == 0x62A8AB43u);
  std::vector<std::uint8_t> up(32), down(32);
  for (int i = 0; i < 32; ++i) {
    up[i] = static_cast<std::uint8_t>(i);
    down[i] = static_cast<std::uint8_t>(31 - i);
  }
  CHECK(crc_of(up) == 0x46DD794Eu);
  CHECK(crc_of(down) == 0x113FDB5Cu);
  // streaming: the first part's result fed back in
  const std::uint32_t part = train::crc32c(check.data(), 4);
  CHECK(train::crc32c(check.data() + 4, check.size() - 4, part) == 0xE3069283u);
  // the mask: ((c >> 15) | (c << 17)) + 0xa282ead8
  CHECK(train::masked_crc32c(nullptr, 0) == 0xa282ead8u);
  CHECK(train::masked_crc32c(check.data(), check.size()) ==
        static_cast<std::uint32_t>(((0xE3069283u >> 15) | (0xE3069283u << 17)) + 0xa282ead8u));
}

TEST_CASE("tfrecord: length, masked CRC of the length, data, masked CRC of the data") {
  // struct.pack("<Q", 3) + masked_crc32c(that) + b"abc" + masked_crc32c(b"abc"), little-endian
  CHECK(hex(train::tfrecord("abc")) == "0300000000000000b099490e6162636e57f121");
  const std::string empty = train::tfrecord("");
  CHECK(empty.size() == 16);
  CHECK(empty.substr(12) == std::string("\xd8\xea\x82\xa2", 4));  // masked_crc32c("") = 0xa282ead8
}

TEST_CASE("tfrecord: a record file holds the framed records in order and is never reused") {
  TempDir dir;
  const std::string path = dir.file("events");
  {
    train::RecordFile f(path);
    f.write("abc");
    f.write("");
    f.write(std::string(100000, 'x'));
  }
  CHECK(read_bytes(path) == train::tfrecord("abc") + train::tfrecord("") + train::tfrecord(std::string(100000, 'x')));
  const std::string e = error_of([&] { train::RecordFile again(path); });
  CHECK(e.find("[tensorboard] cannot create '" + path + "'") == 0);
}

TEST_CASE("tensorboard: a writer's file is named like TensorFlow's and starts with brain.Event:2") {
  TempDir dir;
  train::TensorBoardWriter w(dir.file("tb/run"));
  const std::string name = std::filesystem::path(w.path()).filename().string();
  CHECK(name.rfind("events.out.tfevents.", 0) == 0);
  CHECK(name.ends_with(fmt::format(".{}.moegrad", ::getpid())));
  const std::string bytes = read_bytes(w.path());
  REQUIRE(bytes.size() > 16);
  CHECK(bytes.find("brain.Event:2") != std::string::npos);
  // one complete record so far: the framing's length covers the rest of the file
  std::uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | static_cast<unsigned char>(bytes[static_cast<std::size_t>(i)]);
  CHECK(bytes.size() == n + 16);
  CHECK(train::tfrecord(bytes.substr(12, n)) == bytes);
  const auto before = bytes.size();
  w.write({{"step", 1}, {"loss", 0.5}, {"layers", {{{"tokens_per_expert", {3, 0, 5}}, {"dropped_fraction", 0.25}}}}});
  CHECK(read_bytes(w.path()).size() > before);  // written through, nothing held back
  CHECK(error_of([] { train::TensorBoardWriter bad(""); }) == "[tensorboard] --tensorboard needs a folder, got ''");
}

TEST_CASE("png: signature, IHDR with the size, chunks in order, bad sizes refused") {
  const std::vector<std::uint8_t> rgb(3 * 5 * 2, 200);
  const std::string png = train::encode_png_rgb(5, 2, rgb);
  CHECK(png.substr(0, 8) == std::string("\x89PNG\r\n\x1a\n", 8));
  CHECK(be32(png, 8) == 13);
  CHECK(png.substr(12, 4) == "IHDR");
  CHECK(be32(png, 16) == 5);
  CHECK(be32(png, 20) == 2);
  CHECK(png.substr(png.size() - 12, 8) == std::string("\0\0\0\0IEND", 8));
  CHECK(png.find("IDAT") != std::string::npos);
  // libpng reads back the pixels written.
  std::vector<std::uint8_t> pixels(3 * 7 * 3);
  for (std::size_t i = 0; i < pixels.size(); ++i) pixels[i] = static_cast<std::uint8_t>(i * 37 % 256);
  const std::string file = train::encode_png_rgb(7, 3, pixels);
  png_image image{};
  image.version = PNG_IMAGE_VERSION;
  REQUIRE(png_image_begin_read_from_memory(&image, file.data(), file.size()));
  CHECK(image.width == 7);
  CHECK(image.height == 3);
  image.format = PNG_FORMAT_RGB;
  std::vector<std::uint8_t> back(PNG_IMAGE_SIZE(image));
  REQUIRE(png_image_finish_read(&image, nullptr, back.data(), 0, nullptr));
  CHECK(back == pixels);
  CHECK(error_of([&] { train::encode_png_rgb(5, 3, rgb); }) == "[png] 5 x 3 RGB needs 45 bytes, got 30");
  CHECK(error_of([&] { train::encode_png_rgb(0, 2, rgb); }).find("[png] image size must be") == 0);
}
