// CRC-64/XZ is the check .xz files carry, so liblzma computes it: lzma_crc64 has this
// function's contract (start from 0, feed the previous result back) and picks its fastest
// implementation for the CPU.
#include "train/crc64.h"

#include <lzma.h>

namespace moegrad {

std::uint64_t crc64(const void* data, std::size_t n, std::uint64_t crc) {
  return lzma_crc64(static_cast<const std::uint8_t*>(data), n, crc);
}

}  // namespace moegrad
