// PNG: signature, IHDR, IDAT (zlib stream of rows each led by filter byte 0), IEND; every
// chunk is length | type | data | CRC-32 (zlib's crc32, over type and data).
#include "train/png.h"

#include <zlib.h>

#include "core/error.h"

namespace moegrad::train {

namespace {

void put_be32(std::string& out, std::uint32_t v) {
  for (int i = 3; i >= 0; --i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xFF));
}

void chunk(std::string& out, const char* type, const std::string& data) {
  put_be32(out, static_cast<std::uint32_t>(data.size()));
  const std::size_t at = out.size();
  out.append(type, 4);
  out.append(data);
  const auto* p = reinterpret_cast<const Bytef*>(out.data() + at);
  put_be32(out, static_cast<std::uint32_t>(::crc32(::crc32(0L, Z_NULL, 0), p, static_cast<uInt>(4 + data.size()))));
}

}  // namespace

std::string encode_png_rgb(std::int64_t width, std::int64_t height, const std::vector<std::uint8_t>& rgb) {
  MOEGRAD_CHECK(width >= 1 && height >= 1 && width <= (1 << 24) && height <= (1 << 24), "png",
                "image size must be in [1, 16777216], got {} x {}", width, height);
  MOEGRAD_CHECK(static_cast<std::int64_t>(rgb.size()) == 3 * width * height, "png",
                "{} x {} RGB needs {} bytes, got {}", width, height, 3 * width * height, rgb.size());
  std::string raw;  // the filtered rows
  raw.reserve(static_cast<std::size_t>(height * (1 + 3 * width)));
  for (std::int64_t y = 0; y < height; ++y) {
    raw.push_back(0);
    raw.append(reinterpret_cast<const char*>(rgb.data() + 3 * width * y), static_cast<std::size_t>(3 * width));
  }
  uLongf zlen = ::compressBound(static_cast<uLong>(raw.size()));
  std::string z(zlen, '\0');
  const int rc = ::compress2(reinterpret_cast<Bytef*>(z.data()), &zlen, reinterpret_cast<const Bytef*>(raw.data()),
                             static_cast<uLong>(raw.size()), Z_BEST_COMPRESSION);
  MOEGRAD_CHECK(rc == Z_OK, "png", "zlib compress2 failed with {}", rc);
  z.resize(zlen);

  std::string ihdr;
  put_be32(ihdr, static_cast<std::uint32_t>(width));
  put_be32(ihdr, static_cast<std::uint32_t>(height));
  ihdr += std::string{'\x08', '\x02', '\x00', '\x00', '\x00'};  // 8 bits, RGB, deflate, filter 0, no interlace
  std::string out("\x89PNG\r\n\x1a\n", 8);
  chunk(out, "IHDR", ihdr);
  chunk(out, "IDAT", z);
  chunk(out, "IEND", "");
  return out;
}

}  // namespace moegrad::train
