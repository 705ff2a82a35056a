// train/tensor_data: the user's HDF5 tensors. Shuffled batches are a pure function of (data,
// batch, seed, index), every epoch is a permutation of the rows, a batch may span two epochs,
// evaluation batches follow the file, and every bad file is one line naming the problem.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <string>
#include <vector>

#include "core/ops.h"
#include "tests/test_files.h"
#include "train/hdf5.h"
#include "train/tensor_data.h"

namespace core = moegrad::core;
namespace h5 = moegrad::h5;
namespace train = moegrad::train;
using core::DType;
using core::Tensor;
using doctest::Contains;
using moegrad::Error;

namespace {

// x [N, in] with x[r, :] = r + i / 10 (its row is readable from its values), y [N, 2].
std::string regression_file(const moegrad::test::TempDir& dir, const std::string& name, std::int64_t n,
                            std::int64_t in = 3) {
  std::vector<float> x(static_cast<std::size_t>(n * in)), y(static_cast<std::size_t>(n * 2));
  for (std::int64_t r = 0; r < n; ++r) {
    for (std::int64_t i = 0; i < in; ++i) x[static_cast<std::size_t>(r * in + i)] = static_cast<float>(r) + 0.1f * i;
    y[static_cast<std::size_t>(r * 2)] = static_cast<float>(-r);
    y[static_cast<std::size_t>(r * 2 + 1)] = 0.5f;
  }
  const std::string path = dir.file(name);
  h5::File f = h5::File::create(path);
  f.write("x", core::from_vector<float>(x, {n, in}));
  f.write("y", core::from_vector<float>(y, {n, 2}));
  return path;
}

std::string file_with(const moegrad::test::TempDir& dir, const std::string& name,
                      const std::vector<std::pair<std::string, Tensor>>& datasets) {
  const std::string path = dir.file(name);
  h5::File f = h5::File::create(path);
  for (const auto& [key, t] : datasets) f.write(key, t);
  return path;
}

// The rows of a regression batch [1, B, in], read back from x's values.
std::vector<std::int64_t> rows_of(const train::Batch& b) {
  const auto v = b.x.to_vector<float>();
  const std::int64_t in = b.x.size(-1);
  std::vector<std::int64_t> rows;
  for (std::size_t i = 0; i < v.size(); i += static_cast<std::size_t>(in)) rows.push_back(std::lround(v[i]));
  return rows;
}

}  // namespace

TEST_CASE("tensor data: a regression file of rows, its shapes and its digest") {
  moegrad::test::TempDir dir;
  auto d = train::load_tensor_data(regression_file(dir, "r.h5", 10), "--train-data");
  CHECK(d->kind == train::TensorData::Kind::regression);
  CHECK(d->row_tokens);
  CHECK(d->x.shape() == core::Shape{10, 1, 3});
  CHECK(d->y.shape() == core::Shape{10, 1, 2});
  CHECK(d->rows() == 10);
  CHECK(d->in_dim() == 3);
  CHECK(d->out_dim() == 2);
  CHECK(d->describe().find("regression, 10 rows, x (10, 3) y (10, 2)") != std::string::npos);
  // The same contents elsewhere have the same identity; one changed value changes it.
  auto same = train::load_tensor_data(regression_file(dir, "copy.h5", 10), "--train-data");
  CHECK(same->identity() == d->identity());
  auto other = train::load_tensor_data(regression_file(dir, "other.h5", 11), "--train-data");
  CHECK(other->identity() != d->identity());
  // A batch of rows is one group of B tokens: [1, B, in].
  const train::Batch b = d->rows_batch({4, 1});
  CHECK(b.x.shape() == core::Shape{1, 2, 3});
  CHECK(rows_of(b) == std::vector<std::int64_t>{4, 1});
  CHECK(b.y.to_vector<float>() == std::vector<float>{-4, 0.5f, -1, 0.5f});
  // Read for prediction: x alone.
  auto p = train::load_tensor_data(regression_file(dir, "p.h5", 10), "--input", train::TensorUse::predict);
  CHECK(!p->y.defined());
  CHECK(!p->rows_batch({0}).y.defined());
}

TEST_CASE("tensor data: shuffled batches are a pure function of the index; epochs are permutations") {
  moegrad::test::TempDir dir;
  auto d = train::load_tensor_data(regression_file(dir, "r.h5", 10), "--train-data");
  train::ShuffledTensors a(d, {.batch = 4, .seed = 7}), b(d, {.batch = 4, .seed = 7}), c(d, {.batch = 4, .seed = 8});
  for (std::int64_t e = 0; e < 3; ++e) {
    auto perm = a.permutation(e);
    std::vector<std::int64_t> sorted = perm;
    std::sort(sorted.begin(), sorted.end());
    std::vector<std::int64_t> iota(10);
    std::iota(iota.begin(), iota.end(), 0);
    CHECK(sorted == iota);  // every row once per epoch
  }
  CHECK(a.permutation(0) != a.permutation(1));  // each epoch its own order
  CHECK(a.permutation(0) != c.permutation(0));  // another seed, another order
  // Batch i takes positions [4i, 4i + 4) of the epochs laid end to end: batch 2 spans epochs 0 and 1.
  const auto p0 = a.permutation(0), p1 = a.permutation(1);
  CHECK(a.batch_rows(2) == std::vector<std::int64_t>{p0[8], p0[9], p1[0], p1[1]});
  CHECK(rows_of(a.at(2)) == a.batch_rows(2));
  // Any order of access gives the same batches: seek(i) + next() is batch i.
  std::vector<std::vector<std::int64_t>> forward;
  for (int i = 0; i < 8; ++i) forward.push_back(rows_of(a.next()));
  for (int i = 7; i >= 0; --i) {
    b.seek(i);
    CHECK(rows_of(b.next()) == forward[static_cast<std::size_t>(i)]);
    CHECK(b.cursor() == i + 1);
  }
  CHECK(a.describe().find("shuffled per epoch from seed 7") != std::string::npos);
  CHECK_THROWS_WITH_AS(a.at(-1), Contains("must be >= 0"), Error);
  CHECK_THROWS_WITH_AS(train::ShuffledTensors(d, {.batch = 11, .seed = 0}),
                       Contains("has 10 rows, fewer than one batch (--batch-size 11)"), Error);
}

TEST_CASE("tensor data: evaluation batches follow the file, the last one shorter") {
  moegrad::test::TempDir dir;
  auto d = train::load_tensor_data(regression_file(dir, "r.h5", 10), "--eval-data");
  train::OrderedTensors o(d, 4);
  CHECK(o.batches() == 3);
  CHECK(rows_of(o.at(0)) == std::vector<std::int64_t>{0, 1, 2, 3});
  CHECK(rows_of(o.at(2)) == std::vector<std::int64_t>{8, 9});
  CHECK_THROWS_WITH_AS(o.at(3), Contains("has 3 batches of 4; batch 3 is past its end"), Error);
}

TEST_CASE("tensor data: sequences, tokens for next-token prediction, tokens with targets") {
  moegrad::test::TempDir dir;
  core::Generator g(1);
  const Tensor x3 = core::randn({6, 5, 4}, {DType::f64}, &g), y3 = core::randn({6, 5, 2}, {DType::f64}, &g);
  auto r = train::load_tensor_data(file_with(dir, "r3.h5", {{"x", x3}, {"y", y3}}), "--train-data");
  CHECK(!r->row_tokens);
  CHECK(r->x.dtype() == DType::f32);  // float64 is read as float32
  CHECK(r->seq() == 5);
  CHECK(r->rows_batch({5, 0}).x.shape() == core::Shape{2, 5, 4});

  const Tensor tokens = core::from_vector<std::int64_t>({0, 1, 2, 3, 4, 5, 6, 7}, {2, 4});
  auto t = train::load_tensor_data(file_with(dir, "t.h5", {{"tokens", tokens}}), "--train-data");
  CHECK(t->kind == train::TensorData::Kind::tokens);
  CHECK(t->next_token);
  CHECK(t->x.to_vector<std::int64_t>() == std::vector<std::int64_t>{0, 1, 2, 4, 5, 6});
  CHECK(t->y.to_vector<std::int64_t>() == std::vector<std::int64_t>{1, 2, 3, 5, 6, 7});
  CHECK(t->max_token == 7);
  CHECK_NOTHROW(t->check_vocab(8, "--vocab 8"));
  CHECK_THROWS_WITH_AS(t->check_vocab(6, "--vocab 6"),
                       Contains("token 6 in dataset 'tokens' row 1 is outside [0, 6) (--vocab 6)"), Error);
  auto p = train::load_tensor_data(file_with(dir, "tp.h5", {{"tokens", tokens}}), "--input", train::TensorUse::predict);
  CHECK(p->x.shape() == core::Shape{2, 4});  // predicting: every position is an input

  const Tensor targets = core::from_vector<std::int64_t>({9, 9, 9, 9, 1, 1, 1, 1}, {2, 4});
  auto tt = train::load_tensor_data(file_with(dir, "tt.h5", {{"tokens", tokens}, {"targets", targets}}), "--train-data");
  CHECK(!tt->next_token);
  CHECK(tt->x.shape() == core::Shape{2, 4});
  CHECK(tt->max_token == 9);
  CHECK_THROWS_WITH_AS(tt->check_vocab(9, "the model's"), Contains("token 9 in dataset 'targets' row 0"), Error);
}

TEST_CASE("tensor data: every bad file is one line naming the problem") {
  moegrad::test::TempDir dir;
  const auto fails = [&](const std::string& path, const std::string& needle) {
    INFO(needle);
    CHECK_THROWS_WITH_AS(train::load_tensor_data(path, "--train-data"), Contains(needle.c_str()), Error);
  };
  const Tensor x = core::zeros({8, 3}), y = core::zeros({8, 2});
  fails(dir.file("missing.h5"), "--train-data '" + dir.file("missing.h5") + "': no such file");
  fails(dir.path.string(), "is a directory");
  {
    std::ofstream(dir.file("empty.h5")).close();
    fails(dir.file("empty.h5"), "is not an HDF5 file (it is empty)");
    std::ofstream(dir.file("text.h5")) << "x,y\n1,2\n";
    fails(dir.file("text.h5"), "is not an HDF5 file");
  }
  fails(file_with(dir, "none.h5", {{"z", x}}), "has neither 'x' and 'y' (regression) nor 'tokens'");
  fails(file_with(dir, "noy.h5", {{"x", x}}), "has 'x' but no 'y'");
  fails(file_with(dir, "both.h5", {{"x", x}, {"y", y}, {"tokens", core::zeros({8, 3}, {DType::i64})}}),
        "holds both 'x' and 'tokens'");
  fails(file_with(dir, "rank.h5", {{"x", core::zeros({8})}, {"y", y}}), "dataset 'x' must be [N, in] or [N, seq, in]");
  fails(file_with(dir, "rank4.h5", {{"x", core::zeros({8, 1, 1, 3})}, {"y", y}}), "got shape (8, 1, 1, 3)");
  fails(file_with(dir, "mixed.h5", {{"x", core::zeros({8, 2, 3})}, {"y", y}}), "must have the same rank");
  fails(file_with(dir, "rows.h5", {{"x", x}, {"y", core::zeros({7, 2})}}), "'x' has 8 rows and 'y' has 7");
  fails(file_with(dir, "intx.h5", {{"x", core::zeros({8, 3}, {DType::i64})}, {"y", y}}),
        "dataset 'x' must be float32 or float64, got i64");
  fails(file_with(dir, "empty-rows.h5", {{"x", core::zeros({0, 3})}, {"y", core::zeros({0, 2})}}),
        "dataset 'x' is empty");
  Tensor bad = core::zeros({8, 2});
  bad.data<float>()[2 * 5 + 1] = std::numeric_limits<float>::quiet_NaN();
  fails(file_with(dir, "nan.h5", {{"x", x}, {"y", bad}}), "dataset 'y' holds NaN or Inf (first at row 5)");
  Tensor big = core::zeros({8, 3}, {DType::f64});
  big.data<double>()[3 * 6] = 1e300;
  fails(file_with(dir, "big.h5", {{"x", big}, {"y", y}}), "dataset 'x' holds NaN or Inf as float32 (first at row 6)");
  fails(file_with(dir, "ftok.h5", {{"tokens", core::zeros({8, 3})}}), "dataset 'tokens' must hold integers, got f32");
  fails(file_with(dir, "seq1.h5", {{"tokens", core::zeros({8, 1}, {DType::i64})}}), "at least 2 tokens per row");
  Tensor neg = core::zeros({8, 3}, {DType::i64});
  neg.data<std::int64_t>()[3 * 4 + 2] = -1;
  fails(file_with(dir, "neg.h5", {{"tokens", neg}}), "token -1 in dataset 'tokens' row 4 is negative");
  fails(file_with(dir, "tshape.h5", {{"tokens", core::zeros({8, 3}, {DType::i64})},
                                     {"targets", core::zeros({8, 2}, {DType::i64})}}),
        "'targets' (8, 2) must have the shape of 'tokens' (8, 3)");
}
