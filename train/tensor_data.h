// The user's own tensors from an HDF5 file: `moegrad train --task tensors --train-data F.h5`,
// `moegrad eval` and `moegrad predict`.
//
// A file is one of two kinds, told by its datasets:
//   regression: `x` [N, in] and `y` [N, out], or `x` [N, S, in] and `y` [N, S, out]; float32 or
//               float64 (float16 is read as float32); the model computes in float32.
//   tokens:     `tokens` [N, S] of integers, and optionally `targets` [N, S]. Without targets the
//               task is next-token prediction: inputs tokens[:, :-1], targets tokens[:, 1:]
//               (so S >= 2 and the model sees S - 1 positions).
// A 2-d regression file's rows are samples of one token each: a batch of B rows is the group
// [1, B, in] for the MoE layers, so capacity and the balance loss act over the batch. A 3-d
// file's batch is [B, S, in]: each sample is a group of S tokens (as the synthetic tasks).
//
//   auto data = train::load_tensor_data("train.h5", "--train-data");  // every check, one line each
//   train::ShuffledTensors source(data, {.batch = 32, .seed = 7});
//   train::Batch b = source.at(12);  // batch 12 of the seeded stream of epochs
//
// Every problem is one line naming the file, the dataset and the row where one is at fault:
//   [data] --train-data 'train.h5': dataset 'x' holds NaN or Inf (first at row 17)
#pragma once
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "train/data.h"
#include "train/json_read.h"

namespace moegrad::train {

struct TensorData {
  enum class Kind { regression, tokens };
  Kind kind = Kind::regression;
  std::string path;
  // regression: x, y f32 [N, S, in] / [N, S, out] (S = 1 for a 2-d file); tokens: x, y i64 [N, S].
  // y is undefined when read for TensorUse::predict.
  core::Tensor x, y;
  bool row_tokens = false;        // a 2-d regression file: each row is one token (see above)
  bool next_token = false;        // tokens without `targets`
  std::int64_t max_token = -1;    // tokens: the largest token in x and y
  std::uint64_t digest = 0;       // CRC-64 over the datasets' names, shapes and values as read

  std::int64_t rows() const { return x.size(0); }
  std::int64_t seq() const { return x.size(1); }
  std::int64_t in_dim() const { return kind == Kind::regression ? x.size(2) : 0; }
  std::int64_t out_dim() const { return kind == Kind::regression && y.defined() ? y.size(2) : 0; }
  // The listed rows, in that order, in the batch layout above.
  Batch rows_batch(const std::vector<std::int64_t>& rows) const;
  // What a checkpoint stores to recognise the file: kind, rows, shapes and digest.
  json::Json identity() const;
  std::string describe() const;  // "regression: 1000 rows, x [1000, 8] f32, y [1000, 2] f32, crc64 ..."
  // Throws "[data] 'f.h5': token 70 in dataset 'tokens' row 3 is outside [0, 64) (--vocab 64)"
  // unless every token of x and y is below vocab.
  void check_vocab(std::int64_t vocab, const std::string& why) const;
};

// What a file is read for: inputs and targets (training, `moegrad eval`), or inputs only
// (`moegrad predict`: regression reads `x` only; tokens reads all of `tokens` as inputs, and y
// stays undefined).
enum class TensorUse { fit, predict };

// Reads and checks a file. `flag` names where it came from in messages ("--train-data").
// Refused with one line: a missing or unreadable file, a file that is not HDF5 (an empty one
// included), neither `x`/`y` nor `tokens` (or both), a missing `y`, wrong ranks, integer
// regression data, float tokens, row counts that differ, widths that differ between x's and
// y's sequence dims, no rows, NaN or Inf (the dataset and its first bad row), negative tokens.
std::shared_ptr<const TensorData> load_tensor_data(const std::string& path, const std::string& flag,
                                                   TensorUse use = TensorUse::fit);

// Training batches: an endless stream of epochs, each a permutation of the N rows drawn from the
// seed (Fisher-Yates over Philox, key splitmix64 of the seed and stream 4, counter (j, epoch)).
// Batch i takes positions [iB, (i + 1)B) of that stream: epoch floor(p / N), row perm_e[p mod N],
// so a batch may span two epochs and batch i is a pure function of (data, batch, seed, i).
struct ShuffledTensorsOptions {
  std::int64_t batch = 32;  // <= N
  std::uint64_t seed = 0;
};
class ShuffledTensors : public IndexedDataSource {
 public:
  ShuffledTensors(std::shared_ptr<const TensorData> data, const ShuffledTensorsOptions& options);
  Batch at(std::int64_t index) const override;
  std::string describe() const override;
  std::vector<std::int64_t> permutation(std::int64_t epoch) const;  // rows of epoch e, in order
  std::vector<std::int64_t> batch_rows(std::int64_t index) const;   // the rows batch i takes

 private:
  std::shared_ptr<const TensorData> data_;
  ShuffledTensorsOptions opt_;
  std::uint64_t key_;
  mutable std::mutex mutex_;  // the permutation cache
  mutable std::int64_t cached_epoch_ = -1;
  mutable std::vector<std::int64_t> cached_;
};

// Evaluation batches in file order: batch j is rows [jB, min((j + 1)B, N)), the last one
// possibly shorter; batches() of them cover the file.
class OrderedTensors : public IndexedDataSource {
 public:
  OrderedTensors(std::shared_ptr<const TensorData> data, std::int64_t batch);
  Batch at(std::int64_t index) const override;  // index in [0, batches())
  std::string describe() const override;
  std::int64_t batches() const { return (data_->rows() + batch_ - 1) / batch_; }
  std::int64_t batch_size() const { return batch_; }
  const TensorData& data() const { return *data_; }

 private:
  std::shared_ptr<const TensorData> data_;
  std::int64_t batch_;
};

}  // namespace moegrad::train
