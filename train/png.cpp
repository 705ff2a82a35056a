// PNG through libpng's simplified write API (png_image_write_to_memory): 8-bit RGB rows in,
// a complete file out.
#include "train/png.h"

#include <png.h>

#include "core/error.h"

namespace moegrad::train {

std::string encode_png_rgb(std::int64_t width, std::int64_t height, const std::vector<std::uint8_t>& rgb) {
  MOEGRAD_CHECK(width >= 1 && height >= 1 && width <= (1 << 24) && height <= (1 << 24), "png",
                "image size must be in [1, 16777216], got {} x {}", width, height);
  MOEGRAD_CHECK(static_cast<std::int64_t>(rgb.size()) == 3 * width * height, "png",
                "{} x {} RGB needs {} bytes, got {}", width, height, 3 * width * height, rgb.size());
  png_image image{};
  image.version = PNG_IMAGE_VERSION;
  image.width = static_cast<png_uint_32>(width);
  image.height = static_cast<png_uint_32>(height);
  image.format = PNG_FORMAT_RGB;
  png_alloc_size_t size = 0;  // first the size, then the bytes
  if (png_image_write_get_memory_size(image, size, 0, rgb.data(), 0, nullptr) && size > 0) {
    std::string out(size, '\0');
    if (png_image_write_to_memory(&image, out.data(), &size, 0, rgb.data(), 0, nullptr)) {
      out.resize(size);
      return out;
    }
  }
  const std::string why = image.message;
  png_image_free(&image);
  fail("png", "libpng could not write a {} x {} image: {}", width, height, why);
}

}  // namespace moegrad::train
