// Synthetic training data, generated from a seed, with a resumable cursor.
//
//   train::ClusteredRegression data({.dim = 16, .clusters = 4, .batch = 32, .seq = 16, .seed = 7});
//   train::Batch b = data.next();           // x f32 [32, 16, 16], y f32 [32, 16, 16]
//   ck.cursor["train"] = data.cursor();     // 1: one batch drawn
//   ...
//   data.seek(ck.cursor.at("train"));       // resumes exactly where the checkpoint was taken
//
// Batch i of a source is a pure function of (options, i): sources with the same options give
// the same stream, and seek(i) followed by next() gives batch i whatever came before. The
// task itself (cluster centres, target maps, permutation) depends only on the seed; the split
// picks the sample stream, so Split::eval draws other samples of the same task.
//
// Random numbers: Philox4x32-10 (core/kernels/philox.h). From the seed, splitmix64 derives three
// keys: one for the task's parameters, one per split for the samples. Batch i reads the
// blocks with 128-bit counter (j, i), j = 0, 1, ..., under its split's key, lane by lane:
//   uniform  U = (hi << 32 | lo) >> 11 * 2^-53 from two consecutive u32 (lo first)
//   normal   Box-Muller, cos branch: sqrt(-2 ln(1 - U1)) cos(2 pi U2)
//   integer in [0, n): a u32 below the largest multiple of n under 2^32 (others are redrawn), mod n
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "core/tensor.h"

namespace moegrad::train {

struct Batch {
  core::Tensor x;      // inputs
  core::Tensor y;      // targets
  core::Tensor group;  // each token's latent group where the task has one (ClusteredRegression:
                       // the cluster, i64 [b, n]); undefined otherwise
};

class DataSource {
 public:
  virtual ~DataSource() = default;
  virtual Batch next() = 0;                    // the batch at cursor(); then cursor() + 1
  virtual std::int64_t cursor() const = 0;     // the index of the next batch (batches drawn)
  virtual void seek(std::int64_t cursor) = 0;  // the next batch will be batch `cursor` (>= 0)
  virtual std::string describe() const = 0;    // one line: the task and its options
};

// A source whose batch i is a pure function of i: next() is at(cursor()), then advances.
class IndexedDataSource : public DataSource {
 public:
  virtual Batch at(std::int64_t index) const = 0;
  Batch next() override;
  std::int64_t cursor() const override { return cursor_; }
  void seek(std::int64_t cursor) override;

 private:
  std::int64_t cursor_ = 0;
};

enum class Split { train, eval };
const char* split_name(Split split);  // "train", "eval"

// (a) Clustered regression: each token belongs to one of `clusters` clusters, and each
// cluster has its own target function, so experts can specialise.
//   task (from the seed): centre c_k ~ N(0, centre_scale^2 I_dim); W_k [out_dim, dim] with
//                         entries ~ N(0, 1/dim); b_k [out_dim] with entries ~ N(0, 1/4)
//   token:                k ~ uniform over clusters; z ~ N(0, I_dim);
//                         x = c_k + spread * z;  y = tanh(W_k z + b_k) + noise * N(0, I_out)
// so y = tanh(W_k (x - c_k) / spread + b_k): a different smooth map around every centre
// (|y| < 1 when noise = 0). Drawn per token in that order: k, then z; the noise (when > 0)
// comes from the blocks with counter (j, i + 2^63), so x and the clusters do not depend on it.
struct ClusteredRegressionOptions {
  std::int64_t dim = 16;
  std::int64_t out_dim = 0;  // 0: same as dim
  std::int64_t clusters = 4;
  std::int64_t batch = 32;
  std::int64_t seq = 16;
  double centre_scale = 2.0;
  double spread = 0.5;
  double noise = 0.0;
  std::uint64_t seed = 0;
  Split split = Split::train;
};

class ClusteredRegression : public IndexedDataSource {
 public:
  explicit ClusteredRegression(const ClusteredRegressionOptions& options);

  // x f32 [batch, seq, dim], y f32 [batch, seq, out_dim], group i64 [batch, seq] (clusters).
  Batch at(std::int64_t index) const override;
  std::string describe() const override;
  const ClusteredRegressionOptions& options() const { return opt_; }

  core::Tensor centres() const;  // f32 [clusters, dim]
  core::Tensor weights() const;  // f32 [clusters, out_dim, dim]
  core::Tensor biases() const;   // f32 [clusters, out_dim]
  // Cluster k's target function without noise: x f32 [..., dim] -> f32 [..., out_dim].
  core::Tensor target(std::int64_t cluster, const core::Tensor& x) const;

 private:
  ClusteredRegressionOptions opt_;
  std::uint64_t sample_key_;
  std::vector<double> centres_, weights_, biases_;  // row-major, as the accessors' shapes
};

// (b) Permuted copy, a token task for a small model of SparseMoEBlocks: y_t = pi(x_t), pi a
// fixed random permutation of the vocabulary (drawn from the seed by Fisher-Yates:
// for i = vocab-1 .. 1, swap pi[i] with pi[j], j uniform in [0, i]), tokens x_t uniform in
// [0, vocab). Each target depends on its own token only, because SparseMoEBlocks mix no
// positions: an embedding, the blocks and a linear read-out over the vocabulary can reach
// 100% accuracy, and the experts can split the vocabulary between them.
struct PermutedCopyOptions {
  std::int64_t vocab = 64;  // >= 2
  std::int64_t batch = 32;
  std::int64_t seq = 16;
  std::uint64_t seed = 0;
  Split split = Split::train;
};

class PermutedCopy : public IndexedDataSource {
 public:
  explicit PermutedCopy(const PermutedCopyOptions& options);

  // x i64 [batch, seq] tokens, y i64 [batch, seq] = pi(x); group undefined.
  Batch at(std::int64_t index) const override;
  std::string describe() const override;
  const PermutedCopyOptions& options() const { return opt_; }

  core::Tensor permutation() const;  // i64 [vocab]: pi

 private:
  PermutedCopyOptions opt_;
  std::uint64_t sample_key_;
  std::vector<std::int64_t> perm_;
};

}  // namespace moegrad::train
