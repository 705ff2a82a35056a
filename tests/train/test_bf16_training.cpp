// --precision bf16 in training (issue 16): the default `moegrad train` model trained in bf16
// reaches an eval loss within 5% of FP32's (same seed, same data); parameters, optimizer state and
// checkpoints stay FP32; the precision is part of the run's identity, so a checkpoint is not
// resumed at another precision; a bad value is one line.
#include <doctest/doctest.h>

#include <cmath>
#include <filesystem>

#include "core/precision.h"
#include "train/checkpoint.h"
#include "tests/test_files.h"
#include "train/trainer.h"

namespace core = moegrad::core;
namespace fs = std::filesystem;
namespace train = moegrad::train;
using doctest::Contains;
using moegrad::Error;

namespace {

// The default run (`moegrad train` without flags: 16 experts on 16 clusters), shortened.
train::TrainConfig demo(const std::string& precision, std::int64_t steps) {
  train::TrainConfig c;
  c.precision = precision;
  c.steps = steps;
  c.warmup = 20;
  c.eval_every = 0;
  c.eval_batches = 8;
  c.progress = false;
  return c;
}

}  // namespace

TEST_CASE("bf16 training: the default model's eval loss within 5% of FP32's") {
  const train::TrainResult fp = train::Trainer(demo("fp32", 300), nullptr).run();
  const train::TrainResult bf = train::Trainer(demo("bf16", 300), nullptr).run();
  MESSAGE("eval loss after 300 steps: fp32 ", fp.eval_loss, ", bf16 ", bf.eval_loss);
  REQUIRE(std::isfinite(fp.eval_loss));
  REQUIRE(std::isfinite(bf.eval_loss));
  CHECK(bf.eval_loss != fp.eval_loss);  // the GEMMs did run in bf16
  CHECK(std::abs(bf.eval_loss - fp.eval_loss) <= 0.05 * fp.eval_loss);
  CHECK(core::gemm_precision() == core::Precision::fp32);  // run() restored the caller's precision
}

TEST_CASE("bf16 training: FP32 checkpoints, and no resume at another precision") {
  const moegrad::test::TempDir tmp;
  const fs::path& d = tmp.path;
  auto c = demo("bf16", 4);
  c.warmup = 1;
  c.ckpt_dir = (d / "ckpt").string();
  c.ckpt_every = 2;
  train::Trainer t(c, nullptr);
  const auto r = t.run();
  REQUIRE(!r.last_checkpoint.empty());
  const train::Checkpoint ck = train::load_checkpoint(r.last_checkpoint);
  for (const auto& [key, value] : ck.model) {
    CAPTURE(key);
    CHECK(value.dtype() == core::DType::f32);
  }
  for (const auto& [key, value] : ck.optimizer) {  // the slots and steps; step_count is an i64 counter
    CAPTURE(key);
    CHECK(value.dtype() == (key == "step_count" ? core::DType::i64 : core::DType::f32));
  }
  for (const auto& [key, value] : t.model().state_dict()) CHECK(value.dtype() == core::DType::f32);
  auto other = c;
  other.precision = "fp32";
  other.steps = 6;
  CHECK_THROWS_WITH_AS(train::Trainer(other, nullptr).run(), Contains("was written by another model or task"), Error);
  auto same = c;
  same.steps = 6;
  CHECK(train::Trainer(same, nullptr).run().end_step == 6);
}

TEST_CASE("bf16 training: --precision takes fp32 or bf16") {
  CHECK(train::TrainConfig::option_value("precision", "bf16") == "bf16");
  CHECK_THROWS_WITH_AS(train::TrainConfig::option_value("precision", "fp16"),
                       Contains("--precision must be one of fp32, bf16; got 'fp16'"), Error);
  CHECK(train::TrainConfig().to_json().at("precision") == "fp32");
  CHECK(!train::TrainConfig().identity().contains("precision"));  // fp32 runs keep their identity
  CHECK(demo("bf16", 10).identity().at("precision") == "bf16");
}
