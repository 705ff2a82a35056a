// crc64 (liblzma's lzma_crc64) is CRC-64/XZ: the catalogue's check value, streaming in pieces,
// and a bit-at-a-time reference over lengths and alignments that the sealed checkpoints use.
#include <doctest/doctest.h>

#include <cstdint>
#include <string>
#include <vector>

#include "train/crc64.h"

namespace {

// ECMA-182 reflected, initial and final value all ones: one bit per step.
std::uint64_t reference_crc64(const std::vector<std::uint8_t>& v) {
  std::uint64_t c = ~std::uint64_t{0};
  for (const std::uint8_t b : v) {
    c ^= b;
    for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xC96C5795D7870F42ull ^ (c >> 1) : c >> 1;
  }
  return ~c;
}

}  // namespace

TEST_CASE("crc64: CRC-64/XZ check value, empty input, streaming, and a bitwise reference") {
  const std::string check = "123456789";
  CHECK(moegrad::crc64(check.data(), check.size()) == 0x995DC9BBDF1939FAull);
  CHECK(moegrad::crc64(nullptr, 0) == 0);
  const std::uint64_t part = moegrad::crc64(check.data(), 4);
  CHECK(moegrad::crc64(check.data() + 4, check.size() - 4, part) == 0x995DC9BBDF1939FAull);
  std::vector<std::uint8_t> bytes(4099);
  for (std::size_t i = 0; i < bytes.size(); ++i) bytes[i] = static_cast<std::uint8_t>(i * 131 % 251);
  for (const std::size_t n : {std::size_t{1}, std::size_t{7}, std::size_t{8}, std::size_t{9}, std::size_t{512}, std::size_t{4099}}) {
    const std::vector<std::uint8_t> v(bytes.begin(), bytes.begin() + static_cast<std::ptrdiff_t>(n));
    CHECK(moegrad::crc64(v.data(), v.size()) == reference_crc64(v));
    CHECK(moegrad::crc64(v.data() + 1, v.size() - 1, moegrad::crc64(v.data(), 1)) == reference_crc64(v));  // unaligned rest
  }
}
