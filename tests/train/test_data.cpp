// train/data: the synthetic tasks are pure functions of (options, batch index), resume
// exactly from a cursor, and have the documented shapes, ranges and structure.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "core/ops.h"
#include "train/data.h"

namespace core = moegrad::core;
namespace train = moegrad::train;
using core::DType;
using core::Tensor;
using doctest::Contains;
using moegrad::Error;

namespace {

bool same(const Tensor& a, const Tensor& b) {
  if (a.defined() != b.defined()) return false;
  if (!a.defined()) return true;
  return a.dtype() == b.dtype() && a.shape() == b.shape() && a.to_vector<double>() == b.to_vector<double>();
}

bool same(const train::Batch& a, const train::Batch& b) { return same(a.x, b.x) && same(a.y, b.y) && same(a.group, b.group); }

// Resuming from any cursor gives the stream an uninterrupted source gives.
void check_resumes(train::DataSource& a, train::DataSource& b) {
  std::vector<train::Batch> stream;
  for (int i = 0; i < 6; ++i) stream.push_back(a.next());
  CHECK(a.cursor() == 6);
  CHECK_FALSE(same(stream[0], stream[1]));
  b.seek(4);
  CHECK(b.cursor() == 4);
  CHECK(same(b.next(), stream[4]));
  CHECK(same(b.next(), stream[5]));
  b.seek(1);
  CHECK(same(b.next(), stream[1]));
  a.seek(0);
  CHECK(same(a.next(), stream[0]));
  CHECK_THROWS_WITH_AS(a.seek(-1), Contains("negative cursor"), Error);
}

train::ClusteredRegressionOptions small_regression() {
  return {.dim = 6, .out_dim = 3, .clusters = 5, .batch = 4, .seq = 8, .seed = 21};
}

}  // namespace

TEST_CASE("data: clustered regression is deterministic, resumable and shaped as documented") {
  const auto opt = small_regression();
  train::ClusteredRegression a(opt), b(opt);
  const train::Batch first = a.at(0);
  CHECK(first.x.dtype() == DType::f32);
  CHECK(first.x.shape() == core::Shape{4, 8, 6});
  CHECK(first.y.dtype() == DType::f32);
  CHECK(first.y.shape() == core::Shape{4, 8, 3});
  CHECK(first.group.dtype() == DType::i64);
  CHECK(first.group.shape() == core::Shape{4, 8});
  CHECK(same(first, b.at(0)));
  check_resumes(a, b);

  // out_dim 0 means dim; another seed is another task and stream.
  train::ClusteredRegressionOptions square = opt;
  square.out_dim = 0;
  CHECK(train::ClusteredRegression(square).at(0).y.shape() == core::Shape{4, 8, 6});
  train::ClusteredRegressionOptions other = opt;
  other.seed = 22;
  train::ClusteredRegression c(other);
  CHECK_FALSE(same(c.at(0), first));
  CHECK_FALSE(same(c.centres(), a.centres()));
  CHECK(a.describe() ==
        "clustered regression: dim=6, out_dim=3, clusters=5, batch=4, seq=8, centre_scale=2, spread=0.5, noise=0, "
        "seed=21, split=train");
}

TEST_CASE("data: the eval split draws other samples of the same task") {
  auto opt = small_regression();
  train::ClusteredRegression tr(opt);
  opt.split = train::Split::eval;
  train::ClusteredRegression ev(opt);
  CHECK(same(tr.centres(), ev.centres()));
  CHECK(same(tr.weights(), ev.weights()));
  CHECK(same(tr.biases(), ev.biases()));
  CHECK_FALSE(same(tr.at(0).x, ev.at(0).x));
  CHECK(ev.describe().find("split=eval") != std::string::npos);

  train::PermutedCopyOptions popt{.vocab = 50, .batch = 4, .seq = 8, .seed = 3};
  train::PermutedCopy ptr(popt);
  popt.split = train::Split::eval;
  train::PermutedCopy pev(popt);
  CHECK(same(ptr.permutation(), pev.permutation()));
  CHECK_FALSE(same(ptr.at(0).x, pev.at(0).x));
}

TEST_CASE("data: clustered regression targets follow each cluster's own function") {
  auto opt = small_regression();
  opt.batch = 64;
  train::ClusteredRegression data(opt);
  const train::Batch b = data.at(3);
  const auto x = b.x.to_vector<float>();
  const auto y = b.y.to_vector<float>();
  const auto g = b.group.to_vector<std::int64_t>();
  const std::int64_t d = opt.dim, o = opt.out_dim, tokens = opt.batch * opt.seq;

  // Every cluster occurs, the inputs sit near their cluster's centre, |y| < 1 (noise = 0), and
  // y is the documented tanh(W_k (x - c_k) / spread + b_k).
  std::set<std::int64_t> seen(g.begin(), g.end());
  CHECK(seen == std::set<std::int64_t>{0, 1, 2, 3, 4});
  const auto centres = data.centres().to_vector<float>();
  double max_err = 0, max_abs = 0;
  int nearest_own = 0;
  for (std::int64_t t = 0; t < tokens; ++t) {
    const Tensor xt = core::from_vector<float>(std::vector<float>(x.begin() + t * d, x.begin() + (t + 1) * d), {d});
    const auto want = data.target(g[static_cast<std::size_t>(t)], xt).to_vector<float>();
    for (std::int64_t r = 0; r < o; ++r) {
      max_err = std::max(max_err, std::abs(double(want[static_cast<std::size_t>(r)]) - y[static_cast<std::size_t>(t * o + r)]));
      max_abs = std::max(max_abs, std::abs(double(y[static_cast<std::size_t>(t * o + r)])));
    }
    std::int64_t best = -1;
    double best_d = 1e300;
    for (std::int64_t k = 0; k < opt.clusters; ++k) {
      double dist = 0;
      for (std::int64_t e = 0; e < d; ++e) {
        const double diff = x[static_cast<std::size_t>(t * d + e)] - centres[static_cast<std::size_t>(k * d + e)];
        dist += diff * diff;
      }
      if (dist < best_d) best_d = dist, best = k;
    }
    nearest_own += best == g[static_cast<std::size_t>(t)];
  }
  CHECK(max_err < 1e-5);
  CHECK(max_abs < 1.0);
  CHECK(nearest_own > tokens * 9 / 10);  // clusters are separated: experts can tell them apart

  // The clusters' functions differ: on the same inputs, every pair disagrees clearly.
  const Tensor probe = core::slice(core::reshape(b.x, {tokens, d}), 0, 0, 32, 1);
  std::vector<std::vector<float>> outs;
  for (std::int64_t k = 0; k < opt.clusters; ++k) outs.push_back(data.target(k, probe).to_vector<float>());
  for (std::size_t i = 0; i < outs.size(); ++i) {
    for (std::size_t j = i + 1; j < outs.size(); ++j) {
      double diff = 0;
      for (std::size_t e = 0; e < outs[i].size(); ++e) diff += std::abs(outs[i][e] - outs[j][e]);
      CHECK_MESSAGE(diff / outs[i].size() > 0.1, "clusters ", i, " and ", j);
    }
  }

  // Noise is added on top, from the same stream.
  auto noisy_opt = opt;
  noisy_opt.noise = 0.1;
  train::ClusteredRegression noisy(noisy_opt);
  const train::Batch n = noisy.at(3);
  CHECK(same(n.x, b.x));
  CHECK(same(n.group, b.group));
  CHECK_FALSE(same(n.y, b.y));
  CHECK_THROWS_WITH_AS(data.target(5, probe), Contains("cluster 5 is out of range [0, 5)"), Error);
  CHECK_THROWS_WITH_AS(data.target(0, core::zeros({2, 5})), Contains("target needs inputs [..., 6]"), Error);
}

TEST_CASE("data: permuted copy maps every token through one fixed permutation") {
  train::PermutedCopyOptions opt{.vocab = 37, .batch = 16, .seq = 12, .seed = 9};
  train::PermutedCopy a(opt), b(opt);
  const auto perm = a.permutation().to_vector<std::int64_t>();
  std::vector<std::int64_t> sorted = perm;
  std::sort(sorted.begin(), sorted.end());
  std::vector<std::int64_t> iota(37);
  for (std::size_t i = 0; i < iota.size(); ++i) iota[i] = static_cast<std::int64_t>(i);
  CHECK(sorted == iota);  // a bijection
  CHECK(perm != iota);    // and not the identity

  std::set<std::int64_t> tokens;
  for (int i = 0; i < 5; ++i) {
    const train::Batch batch = a.at(i);
    CHECK(batch.x.dtype() == DType::i64);
    CHECK(batch.x.shape() == core::Shape{16, 12});
    CHECK(batch.y.shape() == core::Shape{16, 12});
    CHECK_FALSE(batch.group.defined());
    const auto x = batch.x.to_vector<std::int64_t>();
    const auto y = batch.y.to_vector<std::int64_t>();
    for (std::size_t t = 0; t < x.size(); ++t) {
      REQUIRE(x[t] >= 0);
      REQUIRE(x[t] < 37);
      CHECK(y[t] == perm[static_cast<std::size_t>(x[t])]);
      tokens.insert(x[t]);
    }
  }
  CHECK(tokens.size() == 37);  // 960 draws cover the vocabulary
  check_resumes(a, b);
  opt.seed = 10;
  CHECK(train::PermutedCopy(opt).permutation().to_vector<std::int64_t>() != perm);
  CHECK(a.describe() == "permuted copy: vocab=37, batch=16, seq=12, seed=9, split=train");
  CHECK_THROWS_WITH_AS(train::PermutedCopy({.vocab = 1}), Contains("vocab must be in [2, 2^32], got 1"), Error);
}

TEST_CASE("data: sources are usable through the DataSource interface") {
  std::vector<std::unique_ptr<train::DataSource>> sources;
  sources.push_back(std::make_unique<train::ClusteredRegression>(small_regression()));
  sources.push_back(std::make_unique<train::PermutedCopy>(train::PermutedCopyOptions{}));
  for (auto& s : sources) {
    CHECK(s->cursor() == 0);
    const train::Batch b = s->next();
    CHECK(b.x.defined());
    CHECK(s->cursor() == 1);
    CHECK_FALSE(s->describe().empty());
  }
  CHECK_THROWS_WITH_AS(train::ClusteredRegression({.dim = 0}), Contains("[ClusteredRegression] dim must be positive"),
                       Error);
  CHECK_THROWS_WITH_AS(train::ClusteredRegression({.spread = 0}), Contains("spread must be finite and > 0"), Error);
}
