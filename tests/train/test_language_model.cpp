// The byte-level MoE transformer (issue 17): shapes, causality (the output at position t does
// not depend on tokens after t, for the attention layer and the whole model, MoE and dense),
// the rotary embedding, the text windows (a pure function of the index, x/y one byte apart, bad
// files one line each), and sampling (greedy, top-k, determinism for a seed).
#include <doctest/doctest.h>

#include <cmath>
#include <fstream>
#include <string>
#include <vector>

#include "core/ops.h"
#include "core/rng.h"
#include "tests/test_files.h"
#include "train/generation.h"
#include "train/models.h"
#include "train/text_data.h"

namespace core = moegrad::core;
namespace nn = moegrad::nn;
namespace ag = moegrad::ag;
namespace train = moegrad::train;
using core::Tensor;
using doctest::Contains;
using moegrad::Error;

namespace {

train::ModelOptions small(const std::string& kind) {
  train::ModelOptions o;
  o.kind = kind;
  o.dim = 16;
  o.heads = 2;
  o.hidden = 16;
  o.experts = 4;
  o.layers = 2;
  o.dropless = true;  // no capacity: a token's routing never depends on the others
  return o;
}

Tensor tokens(const std::vector<std::int64_t>& v) {
  return core::from_vector<std::int64_t>(v, {1, static_cast<std::int64_t>(v.size())});
}

std::string write(const moegrad::test::TempDir& dir, const std::string& name, const std::string& bytes) {
  const std::string path = dir.file(name);
  std::ofstream(path, std::ios::binary) << bytes;
  return path;
}

}  // namespace

TEST_CASE("CausalSelfAttention: shapes, and position t sees only tokens 0..t") {
  core::Generator gen(3);
  nn::CausalSelfAttention attn(16, 4, {}, &gen);
  Tensor x = core::randn({2, 6, 16}, {}, &gen);
  const Tensor y = attn.forward(ag::constant(x)).value();
  CHECK(y.shape() == core::Shape{2, 6, 16});
  // Change positions 3.. of x: outputs 0..2 stay exactly the same, 3.. change.
  std::vector<float> v = x.to_vector<float>();
  for (std::int64_t b = 0; b < 2; ++b)
    for (std::int64_t t = 3; t < 6; ++t)
      for (std::int64_t d = 0; d < 16; ++d) v[static_cast<std::size_t>((b * 6 + t) * 16 + d)] += 1.0f;
  const Tensor y2 = attn.forward(ag::constant(core::from_vector<float>(v, {2, 6, 16}))).value();
  const auto a = y.to_vector<float>(), c = y2.to_vector<float>();
  for (std::int64_t b = 0; b < 2; ++b)
    for (std::int64_t t = 0; t < 6; ++t) {
      bool same = true;
      for (std::int64_t d = 0; d < 16; ++d)
        same = same && a[static_cast<std::size_t>((b * 6 + t) * 16 + d)] == c[static_cast<std::size_t>((b * 6 + t) * 16 + d)];
      CHECK_MESSAGE(same == (t < 3), "batch ", b, " position ", t);
    }
  CHECK_THROWS_WITH_AS(nn::CausalSelfAttention(16, 3), Contains("multiple of heads"), Error);
  CHECK_THROWS_WITH_AS(nn::CausalSelfAttention(12, 4), Contains("even"), Error);  // head width 3
}

TEST_CASE("apply_rotary: position 0 unchanged, norms kept, q.k depends on the offset only") {
  core::Generator gen(5);
  const Tensor base = core::randn({1, 8}, {}, &gen), other = core::randn({1, 8}, {}, &gen);
  // The same vector at every position: [T = 6, D = 8].
  std::vector<float> q(48), k(48);
  for (int t = 0; t < 6; ++t)
    for (int d = 0; d < 8; ++d) q[t * 8 + d] = base.to_vector<float>()[d], k[t * 8 + d] = other.to_vector<float>()[d];
  const auto rq = nn::apply_rotary(ag::constant(core::from_vector<float>(q, {6, 8}))).value().to_vector<float>();
  const auto rk = nn::apply_rotary(ag::constant(core::from_vector<float>(k, {6, 8}))).value().to_vector<float>();
  double n0 = 0, n5 = 0;
  for (int d = 0; d < 8; ++d) {
    CHECK(rq[d] == doctest::Approx(q[d]));
    n0 += q[d] * q[d];
    n5 += rq[40 + d] * rq[40 + d];
  }
  CHECK(n5 == doctest::Approx(n0).epsilon(1e-5));
  const auto dot = [&](int s, int t) {
    double v = 0;
    for (int d = 0; d < 8; ++d) v += rq[s * 8 + d] * rk[t * 8 + d];
    return v;
  };
  CHECK(dot(3, 1) == doctest::Approx(dot(4, 2)).epsilon(1e-4));
  CHECK(dot(5, 5) == doctest::Approx(dot(0, 0)).epsilon(1e-4));
}

TEST_CASE("apply_rotary with tables: the tables' own sizes, bad tables one line") {
  const nn::RotaryTables tables = nn::rotary_tables(6, 8, nn::kRotaryBase, core::DType::f32, core::Device::cpu());
  CHECK(tables.t() == 6);
  CHECK(tables.d() == 8);
  CHECK(tables.fits(6, 8, nn::kRotaryBase, core::DType::f32, core::Device::cpu()));
  CHECK_FALSE(tables.fits(6, 8, nn::kRotaryBase, core::DType::f64, core::Device::cpu()));
  CHECK_FALSE(tables.fits(5, 8, nn::kRotaryBase, core::DType::f32, core::Device::cpu()));
  const ag::Variable x = ag::constant(core::ones({2, 6, 8}));
  CHECK(nn::apply_rotary(x, tables).value().to_vector<float>() == nn::apply_rotary(x).value().to_vector<float>());
  CHECK_THROWS_WITH_AS(nn::apply_rotary(x, nn::RotaryTables{}), Contains("the tables are empty"), Error);
  CHECK_THROWS_WITH_AS(nn::apply_rotary(ag::constant(core::ones({2, 5, 8})), tables), Contains("[..., 6, 8]"), Error);
  CHECK_THROWS_WITH_AS(nn::rotary_tables(6, 7, nn::kRotaryBase, core::DType::f32, core::Device::cpu()),
                       Contains("even head width"), Error);
}

TEST_CASE("language model: logits [b, n, 256], losses, and causality for st_moe and dense") {
  for (const char* kind : {"st_moe", "dense"}) {
    CAPTURE(kind);
    core::Generator gen(11);
    auto model = train::make_language_model(small(kind), 256, &gen);
    model->eval();
    train::Batch batch;
    batch.x = core::from_vector<std::int64_t>({72, 101, 108, 108, 111, 32, 119, 111, 114, 108}, {2, 5});
    batch.y = core::from_vector<std::int64_t>({101, 108, 108, 111, 32, 119, 111, 114, 108, 100}, {2, 5});
    train::ModelOutput out = model->forward(batch);
    CHECK(out.prediction.shape() == core::Shape{2, 5, 256});
    CHECK(out.tokens == 10);
    // Untrained (embedding N(0, 0.02^2)): close to the uniform guess, ln 256 = 5.545.
    CHECK(std::abs(core::sum(out.loss.value()).item<double>() - std::log(256.0)) < 0.5);
    CHECK(out.routing.size() == (std::string(kind) == "dense" ? 0u : 2u));
    // Causality: change the tokens after position 2; positions 0..2 give the same logits.
    const Tensor a = model->forward({tokens({1, 2, 3, 4, 5, 6}), {}, {}}).prediction;
    const Tensor b = model->forward({tokens({1, 2, 3, 200, 100, 0}), {}, {}}).prediction;
    const auto va = a.to_vector<float>(), vb = b.to_vector<float>();
    for (std::int64_t t = 0; t < 6; ++t) {
      bool same = true;
      for (std::int64_t v = 0; v < 256; ++v) same = same && va[t * 256 + v] == vb[t * 256 + v];
      CHECK_MESSAGE(same == (t < 3), "position ", t);
    }
    // The gradient reaches every parameter (the tied head included) once trained from a loss.
    model->train();
    out = model->forward(batch);
    ag::add(out.loss, out.aux_loss).backward();
    for (const auto& [name, p] : model->named_parameters()) CHECK_MESSAGE(p.grad().defined(), name);
  }
  // The dense baseline matches the st_moe model's active parameters (models.h's rule).
  core::Generator gen(1);
  auto moe = train::make_language_model(small("st_moe"), 256, &gen);
  auto dense = train::make_language_model(small("dense"), 256, &gen);
  CHECK(dense->st_moe_active_parameters() == moe->active_parameters());
  CHECK(std::abs(dense->active_parameters() - moe->active_parameters()) <= 2 * (3 * 16 + 3));
  auto bad = small("st_moe");
  bad.heads = 3;
  CHECK_THROWS_WITH_AS(train::make_language_model(bad, 256, &gen), Contains("--heads"), Error);
}

TEST_CASE("TextWindows: batch i is a pure function of i, y is x shifted by one byte") {
  moegrad::test::TempDir dir;
  std::string s;
  for (int i = 0; i < 500; ++i) s += static_cast<char>(i % 251);  // byte p is p mod 251: offsets are readable
  const auto text = train::load_text(write(dir, "t.txt", s), "--text");
  CHECK(text->size() == 500);
  train::TextWindows w(text, {.batch = 4, .seq = 8, .seed = 3, .begin = 100, .end = 400}, "--text");
  const train::Batch b7 = w.at(7);
  CHECK(b7.x.shape() == core::Shape{4, 8});
  const auto x = b7.x.to_vector<std::int64_t>(), y = b7.y.to_vector<std::int64_t>();
  for (std::int64_t r = 0; r < 4; ++r) {
    const std::int64_t start = w.window_start(7, r);
    CHECK(start >= 100);
    CHECK(start + 9 <= 400);  // the window's seq + 1 bytes inside [begin, end)
    for (std::int64_t t = 0; t < 8; ++t) {
      CHECK(x[static_cast<std::size_t>(r * 8 + t)] == (start + t) % 251);
      CHECK(y[static_cast<std::size_t>(r * 8 + t)] == (start + t + 1) % 251);
    }
  }
  // seek + next gives batch i whatever came before; another source of the same options agrees.
  train::TextWindows other(text, {.batch = 4, .seq = 8, .seed = 3, .begin = 100, .end = 400}, "--text");
  other.next();
  other.seek(7);
  CHECK(other.next().x.to_vector<std::int64_t>() == x);
  CHECK(other.cursor() == 8);
  CHECK(w.at(8).x.to_vector<std::int64_t>() != x);
  // The eval split and another seed draw other windows.
  train::TextWindows eval(text, {.batch = 4, .seq = 8, .seed = 3, .split = train::Split::eval, .begin = 100, .end = 400},
                          "--text");
  CHECK(eval.at(7).x.to_vector<std::int64_t>() != x);
}

TEST_CASE("text files: missing, empty, a directory, shorter than a window: one line each") {
  moegrad::test::TempDir dir;
  CHECK_THROWS_WITH_AS(train::load_text(dir.file("nope.txt"), "--text"), Contains("--text '"), Error);
  CHECK_THROWS_WITH_AS(train::load_text(dir.file("nope.txt"), "--text"), Contains("no such file"), Error);
  CHECK_THROWS_WITH_AS(train::load_text(write(dir, "e.txt", ""), "--text"), Contains("is empty"), Error);
  CHECK_THROWS_WITH_AS(train::load_text(dir.path.string(), "--eval-text"), Contains("--eval-text"), Error);
  const auto tiny = train::load_text(write(dir, "tiny.txt", "hello"), "--text");
  CHECK_THROWS_WITH_AS(train::TextWindows(tiny, {.batch = 2, .seq = 8}, "--text 'tiny.txt'"),
                       Contains("--text 'tiny.txt' has 5 bytes, shorter than one window of --seq-len + 1 = 9 bytes"),
                       Error);
  // Any byte is a token: non-UTF-8 text is fine.
  const auto binary = train::load_text(write(dir, "b.bin", std::string("\xff\xfe\x00\x80" "abcdefgh", 12)), "--text");
  CHECK(train::TextWindows(binary, {.batch = 1, .seq = 4}, "--text").at(0).x.to_vector<std::int64_t>().size() == 4);
}

TEST_CASE("sample_logits: greedy, top-k and the draw") {
  const std::vector<double> l = {0.0, 3.0, 1.0, 3.0, -2.0};
  CHECK(train::sample_logits(l, 0.0, 0, 0.99) == 1);  // the lowest of equal maxima
  CHECK(train::sample_logits(l, 1.0, 1, 0.99) == 1);  // top-1 is greedy
  CHECK(train::sample_logits(l, 1.0, 2, 0.99) == 3);  // top-2 keeps bytes 1 and 3, the draw takes the second
  CHECK(train::sample_logits(l, 1.0, 0, 0.0) == 1);   // the smallest draw takes the most likely
  // A tiny temperature is almost greedy; a draw above the top bytes' mass goes to the rest.
  CHECK(train::sample_logits(l, 1e-3, 0, 0.999) == 3);
  CHECK(train::sample_logits(l, 1.0, 0, 0.9999) != 1);
}

TEST_CASE("generate: the same seed gives the same text, greedy is seed-free, long prompts are windowed") {
  core::Generator gen(2);
  auto model = train::make_language_model(small("st_moe"), 256, &gen);
  model->eval();
  const std::string a = train::generate(*model, 8, "Hello", {.tokens = 24, .temperature = 1.0, .seed = 4});
  CHECK(a.size() == 24);
  CHECK(train::generate(*model, 8, "Hello", {.tokens = 24, .temperature = 1.0, .seed = 4}) == a);
  CHECK(train::generate(*model, 8, "Hello", {.tokens = 24, .temperature = 1.0, .seed = 5}) != a);
  const std::string g = train::generate(*model, 8, "Hello", {.tokens = 12, .temperature = 0.0, .seed = 1});
  CHECK(train::generate(*model, 8, "Hello", {.tokens = 12, .temperature = 0.0, .seed = 9}) == g);
  // A prompt longer than the context reads its last 8 bytes: the same as that suffix alone.
  CHECK(train::generate(*model, 8, "a long prompt: Hello, wor", {.tokens = 6, .temperature = 0.0}) ==
        train::generate(*model, 8, "Hello, wor", {.tokens = 6, .temperature = 0.0}));
  CHECK_THROWS_WITH_AS(train::generate(*model, 8, "", {.tokens = 1}), Contains("--prompt must not be empty"), Error);
}
