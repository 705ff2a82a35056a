// TFRecord framing, the container of TensorBoard's event files: each record is
//   uint64 length (little-endian) | uint32 masked_crc32c(length bytes) | data | uint32 masked_crc32c(data)
// with masked_crc32c(x) = ((c >> 15) | (c << 17)) + 0xa282ead8 for c = crc32c(x).
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace moegrad::train {

// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78, initial and final value all ones):
// crc32c("123456789") = 0xE3069283. Streaming: feed the previous result back in as `crc`.
std::uint32_t crc32c(const void* data, std::size_t n, std::uint32_t crc = 0);
std::uint32_t masked_crc32c(const void* data, std::size_t n);

// One framed record: 16 bytes of header and trailer around `data`.
std::string tfrecord(std::string_view data);

// An append-only file of TFRecords. Each record goes out in one write(2), so a crash loses at
// most the record being written; nothing is buffered in user space.
class RecordFile {
 public:
  RecordFile() = default;
  // Creates path (refusing one that exists) or throws "[tensorboard] cannot create '...': ...".
  explicit RecordFile(const std::string& path);
  ~RecordFile();
  RecordFile(RecordFile&& other) noexcept;
  RecordFile& operator=(RecordFile&& other) noexcept;
  RecordFile(const RecordFile&) = delete;
  RecordFile& operator=(const RecordFile&) = delete;

  bool is_open() const { return fd_ >= 0; }
  const std::string& path() const { return path_; }
  void write(std::string_view data);

 private:
  std::string path_;
  int fd_ = -1;
};

}  // namespace moegrad::train
