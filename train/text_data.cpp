// Bytes as tokens and the windows of the text task (text_data.h).
#include "train/text_data.h"

#include <fmt/format.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <vector>

#include "core/error.h"
#include "core/ops/creation.h"
#include "core/ops/views.h"
#include "core/kernels/philox.h"
#include "train/crc64.h"
#include "train/philox_draws.h"

namespace moegrad::train {

namespace {
constexpr const char* kOp = "data";

// Philox keys: streams 7 (train) and 8 (eval) of the seed (data.cpp and tensor_data.cpp use lower ones).
std::uint64_t window_key(std::uint64_t seed, Split split) {
  using core::splitmix64;
  const std::uint64_t stream = split == Split::train ? 7 : 8;
  return splitmix64(splitmix64(seed) ^ stream * 0xD1B54A32D192ED03ull);
}
}  // namespace

json::Json TextData::identity() const {
  json::Json out = json::Json::object();
  out["kind"] = "text";
  out["bytes"] = size();
  out["crc64"] = fmt::format("{:016x}", digest);
  return out;
}

std::shared_ptr<const TextData> load_text(const std::string& path, const std::string& flag) {
  MOEGRAD_CHECK(!path.empty(), kOp, "{} needs a file", flag);
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) fail(kOp, "{} '{}': no such file", flag, path);
  if (std::filesystem::is_directory(path, ec)) fail(kOp, "{} '{}' is a directory, not a text file", flag, path);
  std::ifstream in(path, std::ios::binary);
  if (!in) fail(kOp, "{} '{}' cannot be opened", flag, path);
  auto text = std::make_shared<TextData>();
  text->path = path;
  text->bytes.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  if (in.bad()) fail(kOp, "{} '{}': read error", flag, path);
  if (text->bytes.empty()) fail(kOp, "{} '{}' is empty", flag, path);
  MOEGRAD_CHECK(text->size() < (std::int64_t{1} << 32), kOp, "{} '{}': at most 4 GiB of text, got {} bytes", flag, path,
                text->size());
  text->digest = crc64(text->bytes.data(), text->bytes.size(), 0);
  return text;
}

TextWindows::TextWindows(std::shared_ptr<const TextData> text, const TextWindowsOptions& options,
                         const std::string& what)
    : text_(std::move(text)), opt_(options), what_(what), key_(window_key(options.seed, options.split)) {
  MOEGRAD_CHECK(text_ != nullptr, kOp, "TextWindows needs text");
  if (opt_.end < 0) opt_.end = text_->size();
  MOEGRAD_CHECK(opt_.batch > 0 && opt_.seq > 0, kOp, "--batch-size and --seq-len must be > 0, got {} and {}",
                opt_.batch, opt_.seq);
  MOEGRAD_CHECK(0 <= opt_.begin && opt_.begin <= opt_.end && opt_.end <= text_->size(), kOp,
                "{}: byte range [{}, {}) is outside the text's {} bytes", what_, opt_.begin, opt_.end, text_->size());
  if (opt_.end - opt_.begin < opt_.seq + 1)
    fail(kOp, "{} has {} bytes, shorter than one window of --seq-len + 1 = {} bytes", what_, opt_.end - opt_.begin,
         opt_.seq + 1);
}

std::int64_t TextWindows::window_start(std::int64_t index, std::int64_t row) const {
  MOEGRAD_CHECK(index >= 0 && row >= 0 && row < opt_.batch, kOp, "window ({}, {}) out of range", index, row);
  Draws draws(key_, static_cast<std::uint64_t>(index));
  const auto starts = static_cast<std::uint64_t>(opt_.end - opt_.begin - opt_.seq);  // >= 1
  std::uint64_t u = 0;
  for (std::int64_t j = 0; j <= row; ++j) u = draws.below(starts);
  return opt_.begin + static_cast<std::int64_t>(u);
}

Batch TextWindows::at(std::int64_t index) const {
  MOEGRAD_CHECK(index >= 0, kOp, "batch index must be >= 0, got {}", index);
  const std::int64_t b = opt_.batch, s = opt_.seq;
  Draws draws(key_, static_cast<std::uint64_t>(index));
  const auto starts = static_cast<std::uint64_t>(opt_.end - opt_.begin - s);
  std::vector<std::int64_t> x(static_cast<std::size_t>(b * s)), y(x.size());
  const auto* bytes = reinterpret_cast<const unsigned char*>(text_->bytes.data());
  for (std::int64_t j = 0; j < b; ++j) {
    const std::int64_t start = opt_.begin + static_cast<std::int64_t>(draws.below(starts));
    for (std::int64_t t = 0; t < s; ++t) {
      x[static_cast<std::size_t>(j * s + t)] = bytes[start + t];
      y[static_cast<std::size_t>(j * s + t)] = bytes[start + t + 1];
    }
  }
  return {core::from_vector<std::int64_t>(x, {b, s}), core::from_vector<std::int64_t>(y, {b, s}), core::Tensor{}};
}

std::string TextWindows::describe() const {
  return fmt::format("text {} ({} bytes, crc64 {:016x}), bytes [{}, {}): {} windows of {} + 1 bytes per batch, drawn "
                     "from seed {} ({} split)",
                     what_, text_->size(), text_->digest, opt_.begin, opt_.end, opt_.batch, opt_.seq, opt_.seed,
                     split_name(opt_.split));
}

core::Tensor bytes_to_tokens(const std::string& bytes) {
  std::vector<std::int64_t> ids(bytes.size());
  for (std::size_t i = 0; i < bytes.size(); ++i) ids[i] = static_cast<unsigned char>(bytes[i]);
  return core::from_vector<std::int64_t>(ids, {1, static_cast<std::int64_t>(ids.size())});
}

}  // namespace moegrad::train
