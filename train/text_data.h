// Text as bytes for `moegrad train --task text --text FILE [--eval-text FILE]`: every byte is a
// token (vocabulary 256, so any file is valid input, UTF-8 or not), and a batch is --batch-size
// windows of --seq-len + 1 consecutive bytes: x = window[0..S), y = window[1..S] (next byte).
//
//   auto text = train::load_text("corpus.txt", "--text");   // one line for a missing or empty file
//   train::TextWindows train_windows(text, {.batch = 16, .seq = 128, .seed = 7, .end = text->size() - held});
//   train::Batch b = train_windows.at(12);                    // x, y i64 [16, 128]
//
// Batch i is a pure function of (the text, its range, batch, seq, seed, split, i): window j of
// batch i starts at begin + u, u uniform in [0, end - begin - S] drawn by Philox under the key of
// (seed, split) with counter (k, i) (philox_draws.h: integer below n), j = 0 .. B-1 in order. So
// seek(i) + next() resumes a stream exactly (IndexedDataSource), and the eval split draws its own
// fixed windows: eval batch j is the same every time it is evaluated.
#pragma once
#include <cstdint>
#include <memory>
#include <string>

#include "train/data.h"
#include "train/json_read.h"

namespace moegrad::train {

struct TextData {
  std::string path;
  std::string bytes;
  std::uint64_t digest = 0;  // CRC-64 of the bytes
  std::int64_t size() const { return static_cast<std::int64_t>(bytes.size()); }
  json::Json identity() const;  // {"kind": "text", "bytes": N, "crc64": "..."}: part of a run's identity
};

// Reads a whole file. "[data] --text 'f.txt': no such file", "... is a directory", "... is empty",
// or a read error, one line each.
std::shared_ptr<const TextData> load_text(const std::string& path, const std::string& flag);

struct TextWindowsOptions {
  std::int64_t batch = 16;
  std::int64_t seq = 128;  // tokens per window (each window reads seq + 1 bytes)
  std::uint64_t seed = 0;
  Split split = Split::train;
  std::int64_t begin = 0;  // the bytes windows are drawn from: [begin, end)
  std::int64_t end = -1;   // -1: the end of the text
};

class TextWindows : public IndexedDataSource {
 public:
  // Refuses a range shorter than one window of seq + 1 bytes, naming `what` ("--text 'f.txt'
  // (the first 90% of it)").
  TextWindows(std::shared_ptr<const TextData> text, const TextWindowsOptions& options, const std::string& what);
  Batch at(std::int64_t index) const override;  // x, y i64 [batch, seq]
  std::string describe() const override;
  std::int64_t window_start(std::int64_t index, std::int64_t row) const;  // for tests: the byte offset

 private:
  std::shared_ptr<const TextData> text_;
  TextWindowsOptions opt_;
  std::string what_;
  std::uint64_t key_;
};

// The bytes of a string as tokens i64 [1, n] (generation's prompt).
core::Tensor bytes_to_tokens(const std::string& bytes);

}  // namespace moegrad::train
