// Synthetic tasks: the streams and tasks documented in data.h.
#include "train/data.h"

#include <algorithm>
#include <cmath>
#include <utility>

#include <fmt/format.h>

#include "core/checked_math.h"
#include "core/cpu/allocator.h"
#include "core/ops/creation.h"
#include "train/philox_draws.h"

namespace moegrad::train {

using core::DType;
using core::Tensor;

namespace {

using core::splitmix64;

// The Philox key of one stream of a seed: the task's parameters or a split's samples.
enum class Stream : std::uint64_t { task = 0, train = 1, eval = 2 };
std::uint64_t key_of(std::uint64_t seed, Stream s) {
  return splitmix64(splitmix64(seed) ^ (static_cast<std::uint64_t>(s) + 1) * 0xD1B54A32D192ED03ull);
}
std::uint64_t sample_key(std::uint64_t seed, Split split) {
  return key_of(seed, split == Split::train ? Stream::train : Stream::eval);
}

void check_positive(const char* task, const char* name, std::int64_t v) {
  MOEGRAD_CHECK(v > 0, task, "{} must be positive, got {}", name, v);
}

// A batch's tensors and the task's tables fit int64 and the memory limit (core/cpu/memory_limit.h),
// checked when the source is made rather than when the first batch is drawn.
void check_size(const char* op, const core::Shape& shape, std::size_t bytes_each, const char* what) {
  const std::int64_t count = core::shape_numel(shape, op);
  std::int64_t bytes = 0;
  MOEGRAD_CHECK(core::mul_fits(count, static_cast<std::int64_t>(bytes_each), bytes), op,
                "{} of shape {} is too large: its byte count overflows int64", what, core::shape_str(shape));
  core::cpu::check_host_allocation(op, static_cast<std::uint64_t>(bytes),
                                   fmt::format("{} of shape {}", what, core::shape_str(shape)));
}

Tensor from_doubles(const std::vector<double>& v, const core::Shape& shape) {
  std::vector<float> f(v.begin(), v.end());
  return core::from_vector<float>(f, shape);
}

}  // namespace

// ---- the cursor ------------------------------------------------------------------------------

Batch IndexedDataSource::next() {
  Batch b = at(cursor_);
  ++cursor_;
  return b;
}

void IndexedDataSource::seek(std::int64_t cursor) {
  MOEGRAD_CHECK(cursor >= 0, "data", "cannot seek to a negative cursor ({})", cursor);
  cursor_ = cursor;
}

const char* split_name(Split split) { return split == Split::train ? "train" : "eval"; }

// ---- clustered regression --------------------------------------------------------------------

ClusteredRegression::ClusteredRegression(const ClusteredRegressionOptions& options) : opt_(options) {
  const char* op = "ClusteredRegression";
  if (opt_.out_dim == 0) opt_.out_dim = opt_.dim;
  check_positive(op, "dim", opt_.dim);
  check_positive(op, "out_dim", opt_.out_dim);
  check_positive(op, "clusters", opt_.clusters);
  check_positive(op, "batch", opt_.batch);
  check_positive(op, "seq", opt_.seq);
  MOEGRAD_CHECK(opt_.clusters <= (std::int64_t{1} << 32), op, "at most 2^32 clusters, got {}", opt_.clusters);
  MOEGRAD_CHECK(std::isfinite(opt_.centre_scale) && opt_.centre_scale >= 0, op,
                "centre_scale must be finite and >= 0, got {}", opt_.centre_scale);
  MOEGRAD_CHECK(std::isfinite(opt_.spread) && opt_.spread > 0, op, "spread must be finite and > 0, got {}", opt_.spread);
  MOEGRAD_CHECK(std::isfinite(opt_.noise) && opt_.noise >= 0, op, "noise must be finite and >= 0, got {}", opt_.noise);
  check_size(op, {opt_.batch, opt_.seq, std::max(opt_.dim, opt_.out_dim)}, sizeof(float), "a batch");
  check_size(op, {opt_.clusters, opt_.out_dim, opt_.dim}, sizeof(double), "the cluster weights");  // the largest table
  sample_key_ = sample_key(opt_.seed, opt_.split);

  // The task: centres, then weights, then biases, from the task stream.
  const auto K = static_cast<std::size_t>(opt_.clusters);
  const auto d = static_cast<std::size_t>(opt_.dim);
  const auto o = static_cast<std::size_t>(opt_.out_dim);
  Draws task(key_of(opt_.seed, Stream::task), 0);
  centres_.resize(K * d);
  for (auto& c : centres_) c = opt_.centre_scale * task.normal();
  weights_.resize(K * o * d);
  const double w_scale = 1.0 / std::sqrt(static_cast<double>(d));
  for (auto& w : weights_) w = w_scale * task.normal();
  biases_.resize(K * o);
  for (auto& b : biases_) b = 0.5 * task.normal();
}

Batch ClusteredRegression::at(std::int64_t index) const {
  MOEGRAD_CHECK(index >= 0, "ClusteredRegression", "batch index must be >= 0, got {}", index);
  const auto d = static_cast<std::size_t>(opt_.dim);
  const auto o = static_cast<std::size_t>(opt_.out_dim);
  const std::int64_t tokens = opt_.batch * opt_.seq;
  const char* op = "ClusteredRegression";
  Tensor x = core::empty_for(op, {opt_.batch, opt_.seq, opt_.dim});
  Tensor y = core::empty_for(op, {opt_.batch, opt_.seq, opt_.out_dim});
  Tensor group = core::empty_for(op, {opt_.batch, opt_.seq}, {DType::i64});
  float* px = x.data<float>();
  float* py = y.data<float>();
  std::int64_t* pg = group.data<std::int64_t>();
  Draws draws(sample_key_, static_cast<std::uint64_t>(index));
  Draws noise(sample_key_, static_cast<std::uint64_t>(index) | (std::uint64_t{1} << 63));
  std::vector<double> z(d);
  for (std::int64_t t = 0; t < tokens; ++t) {
    const auto k = static_cast<std::size_t>(draws.below(static_cast<std::uint64_t>(opt_.clusters)));
    pg[t] = static_cast<std::int64_t>(k);
    const double* c = centres_.data() + k * d;
    for (std::size_t e = 0; e < d; ++e) {
      z[e] = draws.normal();
      px[static_cast<std::size_t>(t) * d + e] = static_cast<float>(c[e] + opt_.spread * z[e]);
    }
    const double* w = weights_.data() + k * o * d;
    const double* b = biases_.data() + k * o;
    for (std::size_t r = 0; r < o; ++r) {
      double acc = b[r];
      for (std::size_t e = 0; e < d; ++e) acc += w[r * d + e] * z[e];
      py[static_cast<std::size_t>(t) * o + r] = static_cast<float>(std::tanh(acc));
    }
    if (opt_.noise > 0) {
      for (std::size_t r = 0; r < o; ++r)
        py[static_cast<std::size_t>(t) * o + r] += static_cast<float>(opt_.noise * noise.normal());
    }
  }
  return {x, y, group};
}

std::string ClusteredRegression::describe() const {
  return fmt::format(
      "clustered regression: dim={}, out_dim={}, clusters={}, batch={}, seq={}, centre_scale={}, spread={}, "
      "noise={}, seed={}, split={}",
      opt_.dim, opt_.out_dim, opt_.clusters, opt_.batch, opt_.seq, opt_.centre_scale, opt_.spread, opt_.noise,
      opt_.seed, split_name(opt_.split));
}

Tensor ClusteredRegression::centres() const { return from_doubles(centres_, {opt_.clusters, opt_.dim}); }
Tensor ClusteredRegression::weights() const {
  return from_doubles(weights_, {opt_.clusters, opt_.out_dim, opt_.dim});
}
Tensor ClusteredRegression::biases() const { return from_doubles(biases_, {opt_.clusters, opt_.out_dim}); }

Tensor ClusteredRegression::target(std::int64_t cluster, const Tensor& x) const {
  const char* op = "ClusteredRegression";
  MOEGRAD_CHECK(cluster >= 0 && cluster < opt_.clusters, op, "cluster {} is out of range [0, {})", cluster,
                opt_.clusters);
  MOEGRAD_CHECK(x.defined() && x.dim() >= 1 && x.shape().back() == opt_.dim, op,
                "target needs inputs [..., {}], got {}", opt_.dim,
                x.defined() ? core::shape_str(x.shape()) : std::string("an undefined tensor"));
  const auto xs = x.to_vector<double>();
  const auto d = static_cast<std::size_t>(opt_.dim);
  const auto o = static_cast<std::size_t>(opt_.out_dim);
  const std::size_t rows = xs.size() / d;
  const auto k = static_cast<std::size_t>(cluster);
  const double* c = centres_.data() + k * d;
  const double* w = weights_.data() + k * o * d;
  const double* b = biases_.data() + k * o;
  std::vector<float> out(rows * o);
  for (std::size_t i = 0; i < rows; ++i) {
    for (std::size_t r = 0; r < o; ++r) {
      double acc = b[r];
      for (std::size_t e = 0; e < d; ++e) acc += w[r * d + e] * (xs[i * d + e] - c[e]) / opt_.spread;
      out[i * o + r] = static_cast<float>(std::tanh(acc));
    }
  }
  core::Shape shape = x.shape();
  shape.back() = opt_.out_dim;
  return core::from_vector<float>(out, shape);
}

// ---- permuted copy ---------------------------------------------------------------------------

PermutedCopy::PermutedCopy(const PermutedCopyOptions& options) : opt_(options) {
  const char* op = "PermutedCopy";
  MOEGRAD_CHECK(opt_.vocab >= 2 && opt_.vocab <= (std::int64_t{1} << 32), op, "vocab must be in [2, 2^32], got {}",
                opt_.vocab);
  check_positive(op, "batch", opt_.batch);
  check_positive(op, "seq", opt_.seq);
  check_size(op, {opt_.batch, opt_.seq}, sizeof(std::int64_t), "a batch");
  check_size(op, {opt_.vocab}, sizeof(std::int64_t), "the permutation");
  sample_key_ = sample_key(opt_.seed, opt_.split);
  perm_.resize(static_cast<std::size_t>(opt_.vocab));
  for (std::size_t i = 0; i < perm_.size(); ++i) perm_[i] = static_cast<std::int64_t>(i);
  Draws task(key_of(opt_.seed, Stream::task), 0);
  for (std::size_t i = perm_.size() - 1; i > 0; --i) {
    const auto j = static_cast<std::size_t>(task.below(i + 1));
    std::swap(perm_[i], perm_[j]);
  }
}

Batch PermutedCopy::at(std::int64_t index) const {
  MOEGRAD_CHECK(index >= 0, "PermutedCopy", "batch index must be >= 0, got {}", index);
  Tensor x = core::empty_for("PermutedCopy", {opt_.batch, opt_.seq}, {DType::i64});
  Tensor y = core::empty_for("PermutedCopy", {opt_.batch, opt_.seq}, {DType::i64});
  std::int64_t* px = x.data<std::int64_t>();
  std::int64_t* py = y.data<std::int64_t>();
  Draws draws(sample_key_, static_cast<std::uint64_t>(index));
  const std::int64_t tokens = opt_.batch * opt_.seq;
  for (std::int64_t t = 0; t < tokens; ++t) {
    const auto v = static_cast<std::int64_t>(draws.below(static_cast<std::uint64_t>(opt_.vocab)));
    px[t] = v;
    py[t] = perm_[static_cast<std::size_t>(v)];
  }
  return {x, y, Tensor{}};
}

std::string PermutedCopy::describe() const {
  return fmt::format("permuted copy: vocab={}, batch={}, seq={}, seed={}, split={}", opt_.vocab, opt_.batch, opt_.seq,
                     opt_.seed, split_name(opt_.split));
}

Tensor PermutedCopy::permutation() const { return core::from_vector<std::int64_t>(perm_, {opt_.vocab}); }

}  // namespace moegrad::train
