// The user's tensors from an HDF5 file and their two batch streams (tensor_data.h).
#include "train/tensor_data.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <cmath>
#include <filesystem>
#include <optional>

#include "core/checked_math.h"
#include "core/cpu/allocator.h"
#include "core/error.h"
#include "core/ops/creation.h"
#include "core/ops/indexing.h"
#include "core/ops/views.h"
#include "core/kernels/philox.h"
#include "train/crc64.h"
#include "train/hdf5.h"
#include "train/philox_draws.h"

namespace moegrad::train {

using core::DType;
using core::Tensor;

namespace {
constexpr const char* kOp = "data";

// The Philox key of the shuffle: stream 4 of the seed (data.cpp's streams are 0..2).
std::uint64_t shuffle_key(std::uint64_t seed) {
  using core::splitmix64;
  return splitmix64(splitmix64(seed) ^ std::uint64_t{5} * 0xD1B54A32D192ED03ull);
}

bool is_float(DType d) { return d == DType::f32 || d == DType::f64; }
bool is_integer(DType d) { return d == DType::i64 || d == DType::u8; }

// The first row of t [N, ...] holding a value that is not finite, or -1.
std::int64_t first_nonfinite_row(const Tensor& t) {
  const std::int64_t n = t.size(0), per = n > 0 ? t.numel() / n : 0;
  const float* p = t.data<float>();
  for (std::int64_t r = 0; r < n; ++r)
    for (std::int64_t i = 0; i < per; ++i)
      if (!std::isfinite(p[r * per + i])) return r;
  return -1;
}

struct Reader {
  const std::string& flag;
  const std::string& path;
  const h5::File& file;
  std::uint64_t digest = 0;

  [[noreturn]] void error(const std::string& what) const { fail(kOp, "{} '{}': {}", flag, path, what); }

  // The dataset, folded into the digest as read (name, dtype, shape, bytes).
  Tensor read(const char* name) {
    Tensor t;
    try {
      t = file.read(name);
    } catch (const Error& e) {
      error(fmt::format("cannot read dataset '{}': {}", name, e.what()));
    }
    const std::string head = fmt::format("{}:{}:{};", name, core::dtype_name(t.dtype()), core::shape_str(t.shape()));
    digest = crc64(head.data(), head.size(), digest);
    digest = crc64(t.raw_data(), static_cast<std::size_t>(t.numel()) * core::dtype_size(t.dtype()), digest);
    return t;
  }
  void check_rank(const char* name, const Tensor& t, std::int64_t lo, std::int64_t hi, const char* layout) const {
    if (t.dim() < lo || t.dim() > hi)
      error(fmt::format("dataset '{}' must be {}, got shape {}", name, layout, core::shape_str(t.shape())));
    for (std::int64_t d = 0; d < t.dim(); ++d)
      if (t.size(d) == 0) error(fmt::format("dataset '{}' is empty (shape {})", name, core::shape_str(t.shape())));
  }
  // Regression data as f32, every value finite (checked after the conversion: a float64 beyond
  // float32's range is as unusable as an Inf).
  Tensor floats(const char* name, const Tensor& t) const {
    if (!is_float(t.dtype()))
      error(fmt::format("dataset '{}' must be float32 or float64, got {}", name, core::dtype_name(t.dtype())));
    Tensor f = core::contiguous(core::to_dtype(t, DType::f32));
    if (const std::int64_t r = first_nonfinite_row(f); r >= 0)
      error(fmt::format("dataset '{}' holds NaN or Inf{} (first at row {})", name,
                        t.dtype() == DType::f64 ? " as float32" : "", r));
    return f;
  }
  // Token data as i64, every token >= 0; returns the largest.
  Tensor tokens(const char* name, const Tensor& t, std::int64_t& max_token) const {
    if (!is_integer(t.dtype()))
      error(fmt::format("dataset '{}' must hold integers, got {}", name, core::dtype_name(t.dtype())));
    Tensor v = core::contiguous(core::to_dtype(t, DType::i64));
    const std::int64_t* p = v.data<std::int64_t>();
    const std::int64_t per = v.size(1);
    for (std::int64_t i = 0; i < v.numel(); ++i) {
      if (p[i] < 0) error(fmt::format("token {} in dataset '{}' row {} is negative", p[i], name, i / per));
      max_token = std::max(max_token, p[i]);
    }
    return v;
  }
};

}  // namespace

std::shared_ptr<const TensorData> load_tensor_data(const std::string& path, const std::string& flag, TensorUse use) {
  const bool targets = use == TensorUse::fit;
  MOEGRAD_CHECK(!path.empty(), kOp, "{} needs a file", flag);
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) fail(kOp, "{} '{}': no such file", flag, path);
  if (std::filesystem::is_directory(path, ec)) fail(kOp, "{} '{}' is a directory, not an HDF5 file", flag, path);
  if (!h5::is_hdf5(path))
    fail(kOp, "{} '{}' is not an HDF5 file{}", flag, path,
         std::filesystem::file_size(path, ec) == 0 ? " (it is empty)" : "");
  std::optional<h5::File> opened;
  try {
    opened.emplace(h5::File::open(path));
  } catch (const Error& e) {
    fail(kOp, "{} '{}' cannot be opened: {}", flag, path, e.what());
  }
  const h5::File& file = *opened;
  Reader in{flag, path, file};
  auto data = std::make_shared<TensorData>();
  data->path = path;
  const bool has_x = file.exists("x"), has_tokens = file.exists("tokens");
  if (has_x && has_tokens) in.error("holds both 'x' and 'tokens': a file is regression (x, y) or tokens, not both");
  if (!has_x && !has_tokens) {
    std::vector<std::string> found = file.list("/", true);
    in.error(fmt::format("has neither 'x' and 'y' (regression) nor 'tokens' (token sequences); datasets found: {}",
                         found.empty() ? std::string("none") : fmt::format("{}", fmt::join(found, ", "))));
  }
  if (has_x) {
    data->kind = TensorData::Kind::regression;
    if (!targets) {
      Tensor x = in.read("x");
      in.check_rank("x", x, 2, 3, "[N, in] or [N, seq, in]");
      x = in.floats("x", x);
      data->row_tokens = x.dim() == 2;
      data->x = data->row_tokens ? core::reshape(x, {x.size(0), 1, x.size(1)}) : x;
      data->digest = in.digest;
      return data;
    }
    if (!file.exists("y")) in.error("has 'x' but no 'y' (regression needs both)");
    Tensor x = in.read("x"), y = in.read("y");
    in.check_rank("x", x, 2, 3, "[N, in] or [N, seq, in]");
    in.check_rank("y", y, 2, 3, "[N, out] or [N, seq, out]");
    if (x.dim() != y.dim())
      in.error(fmt::format("'x' {} and 'y' {} must have the same rank", core::shape_str(x.shape()), core::shape_str(y.shape())));
    if (x.size(0) != y.size(0))
      in.error(fmt::format("'x' has {} rows and 'y' has {}", x.size(0), y.size(0)));
    if (x.dim() == 3 && x.size(1) != y.size(1))
      in.error(fmt::format("'x' has sequences of {} and 'y' of {} (shapes {} and {})", x.size(1), y.size(1),
                           core::shape_str(x.shape()), core::shape_str(y.shape())));
    x = in.floats("x", x);
    y = in.floats("y", y);
    data->row_tokens = x.dim() == 2;
    if (data->row_tokens) {
      x = core::reshape(x, {x.size(0), 1, x.size(1)});
      y = core::reshape(y, {y.size(0), 1, y.size(1)});
    }
    data->x = x;
    data->y = y;
  } else {
    data->kind = TensorData::Kind::tokens;
    Tensor t = in.read("tokens");
    in.check_rank("tokens", t, 2, 2, "[N, seq]");
    t = in.tokens("tokens", t, data->max_token);
    if (!targets) {
      data->x = t;
    } else if (file.exists("targets")) {
      Tensor y = in.read("targets");
      in.check_rank("targets", y, 2, 2, "[N, seq]");
      if (y.shape() != t.shape())
        in.error(fmt::format("'targets' {} must have the shape of 'tokens' {}", core::shape_str(y.shape()),
                             core::shape_str(t.shape())));
      data->x = t;
      data->y = in.tokens("targets", y, data->max_token);
    } else {
      if (t.size(1) < 2)
        in.error(fmt::format("'tokens' {} has sequences of 1: next-token prediction needs at least 2 tokens per row "
                             "(or give 'targets')", core::shape_str(t.shape())));
      data->next_token = true;
      data->x = core::contiguous(core::narrow(t, 1, 0, t.size(1) - 1));
      data->y = core::contiguous(core::narrow(t, 1, 1, t.size(1) - 1));
    }
  }
  data->digest = in.digest;
  return data;
}

Batch TensorData::rows_batch(const std::vector<std::int64_t>& rows) const {
  const Tensor index = core::from_vector<std::int64_t>(rows, {static_cast<std::int64_t>(rows.size())});
  // B samples of one token: one group of B tokens.
  const auto take = [&](const Tensor& t) {
    if (!t.defined()) return t;
    const Tensor r = core::index_select(t, 0, index);
    return row_tokens ? core::reshape(r, {1, r.size(0), r.size(2)}) : r;
  };
  return {take(x), take(y), Tensor{}};
}

json::Json TensorData::identity() const {
  json::Json out = json::Json::object();
  out["kind"] = kind == Kind::regression ? "regression" : "tokens";
  out["x"] = core::shape_str(x.shape());
  if (y.defined()) out["y"] = core::shape_str(y.shape());
  out["crc64"] = fmt::format("{:016x}", digest);
  return out;
}

std::string TensorData::describe() const {
  if (kind == Kind::regression)
  {
    // The shapes as in the file: [N, width] for a file of rows.
    const auto file_shape = [&](const Tensor& t) {
      return core::shape_str(row_tokens ? core::Shape{t.size(0), t.size(2)} : t.shape());
    };
    return fmt::format("'{}': regression, {} rows, x {}{}{}, crc64 {:016x}", path, rows(), file_shape(x),
                       y.defined() ? " y " + file_shape(y) : std::string(),
                       row_tokens ? " (a batch of rows is one group of tokens)" : "", digest);
  }
  return fmt::format("'{}': tokens, {} rows of {} positions{}, largest token {}, crc64 {:016x}", path, rows(), seq(),
                     next_token ? " (next-token: tokens[:, :-1] -> tokens[:, 1:])" : " (tokens -> targets)", max_token,
                     digest);
}

void TensorData::check_vocab(std::int64_t vocab, const std::string& why) const {
  if (kind != Kind::tokens || max_token < vocab) return;
  for (const auto& [name, t] : {std::pair{"tokens", x}, std::pair{next_token ? "tokens" : "targets", y}}) {
    if (!t.defined()) continue;
    const std::int64_t* p = t.data<std::int64_t>();
    for (std::int64_t i = 0; i < t.numel(); ++i)
      if (p[i] >= vocab)
        fail(kOp, "'{}': token {} in dataset '{}' row {} is outside [0, {}) ({})", path, p[i], name, i / t.size(1),
             vocab, why);
  }
}

// ---- shuffled training batches ----------------------------------------------------------------

ShuffledTensors::ShuffledTensors(std::shared_ptr<const TensorData> data, const ShuffledTensorsOptions& options)
    : data_(std::move(data)), opt_(options), key_(shuffle_key(options.seed)) {
  MOEGRAD_CHECK(data_ != nullptr, kOp, "ShuffledTensors needs data");
  MOEGRAD_CHECK(opt_.batch > 0, kOp, "--batch-size must be positive, got {}", opt_.batch);
  MOEGRAD_CHECK(data_->rows() <= (std::int64_t{1} << 32), kOp, "'{}': at most 2^32 rows can be shuffled, got {}",
                data_->path, data_->rows());
  if (opt_.batch > data_->rows())
    fail(kOp, "'{}' has {} rows, fewer than one batch (--batch-size {})", data_->path, data_->rows(), opt_.batch);
  core::cpu::check_host_allocation(kOp, static_cast<std::uint64_t>(data_->rows()) * sizeof(std::int64_t),
                                   "the shuffle's permutation");
}

std::vector<std::int64_t> ShuffledTensors::permutation(std::int64_t epoch) const {
  MOEGRAD_CHECK(epoch >= 0, kOp, "epoch must be >= 0, got {}", epoch);
  std::vector<std::int64_t> perm(static_cast<std::size_t>(data_->rows()));
  for (std::size_t i = 0; i < perm.size(); ++i) perm[i] = static_cast<std::int64_t>(i);
  Draws draws(key_, static_cast<std::uint64_t>(epoch));
  for (std::size_t i = perm.size() - 1; i > 0; --i) std::swap(perm[i], perm[draws.below(i + 1)]);
  return perm;
}

std::vector<std::int64_t> ShuffledTensors::batch_rows(std::int64_t index) const {
  MOEGRAD_CHECK(index >= 0, kOp, "batch index must be >= 0, got {}", index);
  const std::int64_t n = data_->rows(), b = opt_.batch;
  std::int64_t first = 0;
  MOEGRAD_CHECK(core::mul_fits(index, b, first), kOp, "batch index {} is too large", index);
  std::vector<std::int64_t> rows(static_cast<std::size_t>(b));
  std::lock_guard<std::mutex> lock(mutex_);
  for (std::int64_t j = 0; j < b; ++j) {
    const std::int64_t p = first + j, epoch = p / n;
    if (epoch != cached_epoch_) {
      cached_ = permutation(epoch);
      cached_epoch_ = epoch;
    }
    rows[static_cast<std::size_t>(j)] = cached_[static_cast<std::size_t>(p % n)];
  }
  return rows;
}

Batch ShuffledTensors::at(std::int64_t index) const { return data_->rows_batch(batch_rows(index)); }

std::string ShuffledTensors::describe() const {
  return fmt::format("tensors {}; batches of {} rows shuffled per epoch from seed {}", data_->describe(), opt_.batch,
                     opt_.seed);
}

// ---- evaluation batches in file order ---------------------------------------------------------

OrderedTensors::OrderedTensors(std::shared_ptr<const TensorData> data, std::int64_t batch)
    : data_(std::move(data)), batch_(batch) {
  MOEGRAD_CHECK(data_ != nullptr, kOp, "OrderedTensors needs data");
  MOEGRAD_CHECK(batch_ > 0, kOp, "the batch size must be positive, got {}", batch_);
}

Batch OrderedTensors::at(std::int64_t index) const {
  MOEGRAD_CHECK(index >= 0 && index < batches(), kOp, "'{}' has {} batches of {}; batch {} is past its end",
                data_->path, batches(), batch_, index);
  const std::int64_t first = index * batch_, count = std::min(batch_, data_->rows() - first);
  std::vector<std::int64_t> rows(static_cast<std::size_t>(count));
  for (std::int64_t j = 0; j < count; ++j) rows[static_cast<std::size_t>(j)] = first + j;
  return data_->rows_batch(rows);
}

std::string OrderedTensors::describe() const {
  return fmt::format("{}; {} batches of {} rows in file order", data_->describe(), batches(), batch_);
}

}  // namespace moegrad::train
