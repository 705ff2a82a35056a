// The TensorBoard images as PNG files (8-bit RGB), written by libpng.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace moegrad::train {

// rgb: height rows of width pixels of 3 bytes, row-major (rgb.size() == 3 * width * height).
// Returns the PNG file's bytes.
std::string encode_png_rgb(std::int64_t width, std::int64_t height, const std::vector<std::uint8_t>& rgb);

}  // namespace moegrad::train
