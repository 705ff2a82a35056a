// CRC-64 as XZ computes it (ECMA-182 polynomial, reflected, initial and final value all ones):
// crc64("123456789") = 0x995DC9BBDF1939FA. Checkpoints use it for the whole-file checksum in
// the user block and for each tensor's `crc64` attribute. Streaming: feed the previous result
// back in as `crc` (start from 0). Computed by liblzma (lzma_crc64).
#pragma once
#include <cstddef>
#include <cstdint>

namespace moegrad {

std::uint64_t crc64(const void* data, std::size_t n, std::uint64_t crc = 0);

}  // namespace moegrad
