// The training loop: exact resume, checkpoints that do not fit, non-finite steps, config errors.
#include <doctest/doctest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>

#include "tests/test_files.h"
#include "train/trainer.h"

namespace core = moegrad::core;
namespace fs = std::filesystem;
namespace train = moegrad::train;
using doctest::Contains;
using moegrad::Error;

namespace {

train::TrainConfig small(const std::string& task, const fs::path& dir) {
  train::TrainConfig c;
  c.task = task;
  c.model.dim = 8;
  c.model.hidden = 8;
  c.model.experts = 4;
  c.model.noise_gates = true;  // resume must also restore the gate-noise generator
  c.input_dim = 6;
  c.clusters = 3;
  c.vocab = 12;
  c.seq_len = 6;
  c.batch_size = 4;
  c.steps = 9;
  c.warmup = 2;
  c.eval_every = 4;
  c.eval_batches = 1;
  c.log_every = 1;
  c.progress = false;
  c.ckpt_dir = (dir / "ckpt").string();
  c.ckpt_every = 3;
  c.metrics = (dir / "metrics.jsonl").string();
  return c;
}

std::vector<std::string> lines(const fs::path& p) {
  std::ifstream in(p);
  std::vector<std::string> out;
  for (std::string l; std::getline(in, l);) out.push_back(l);
  return out;
}

// Loss lines without the timing field, which differs between runs.
std::vector<std::string> without_timing(std::vector<std::string> v) {
  for (auto& l : v) l = l.substr(0, l.find(",\"ms_per_step\""));
  return v;
}

void check_same_parameters(train::Trainer& a, train::Trainer& b) {
  const auto sa = a.model().state_dict(), sb = b.model().state_dict();
  REQUIRE(sa.size() == sb.size());
  for (const auto& [key, value] : sa) {
    CAPTURE(key);
    CHECK(core::contiguous(value).to_vector<float>() == core::contiguous(sb.at(key)).to_vector<float>());
  }
}

}  // namespace

TEST_CASE("trainer: stopping at step K and resuming equals one uninterrupted run, bit for bit") {
  for (const char* task : {"clustered-regression", "sequence"}) {
    CAPTURE(task);
    const moegrad::test::TempDir tmp_one, tmp_two;
    const fs::path &one = tmp_one.path, &two = tmp_two.path;
    train::Trainer full(small(task, one), nullptr);
    const auto r_full = full.run();
    CHECK(r_full.end_step == 9);

    auto first = small(task, two);
    first.stop_at = 5;
    train::Trainer part1(first, nullptr);
    const auto r1 = part1.run();
    CHECK(r1.end_step == 5);
    CHECK(fs::exists(two / "ckpt" / "step-000000005.h5"));

    train::Trainer part2(small(task, two), nullptr);  // --resume auto
    const auto r2 = part2.run();
    CHECK(r2.start_step == 5);
    CHECK(r2.resumed_from.find("step-000000005.h5") != std::string::npos);
    CHECK(r2.last_loss == r_full.last_loss);
    check_same_parameters(full, part2);
    // Every step's losses, aux losses and routing are the same in both histories.
    CHECK(without_timing(lines(one / "metrics.jsonl")) == without_timing(lines(two / "metrics.jsonl")));
    // keep_last 3: steps 3, 6, 9 of the full run.
    train::CheckpointDir dir((one / "ckpt").string(), 3);
    CHECK(dir.list().size() == 3);
  }
}

TEST_CASE("trainer: a checkpoint of another model is refused with the file's name") {
  const moegrad::test::TempDir tmp;
  const fs::path& d = tmp.path;
  auto c = small("clustered-regression", d);
  c.steps = 3;
  train::Trainer(c, nullptr).run();
  auto other = c;
  other.model.experts = 6;
  train::Trainer t(other, nullptr);
  CHECK_THROWS_WITH_AS(t.run(), Contains("step-000000003.h5' was written by another model or task"), Error);
}

TEST_CASE("trainer: a non-finite loss stops with the step and the first op, or is skipped") {
  const moegrad::test::TempDir tmp;
  const fs::path& d = tmp.path;
  auto c = small("clustered-regression", d);
  c.ckpt_dir.clear();
  c.resume = "none";
  {
    train::Trainer t(c, nullptr);
    core::fill_(t.model().parameter("in_proj.weight").value(), NAN);
    CHECK_THROWS_WITH_AS(t.run(), Contains("step 1: the loss or a gradient is NaN/Inf; first op: [anomaly] forward of"), Error);
  }
  {
    c.skip_nonfinite = true;
    train::Trainer t(c, nullptr);
    core::fill_(t.model().parameter("in_proj.weight").value(), NAN);
    // Every step is skipped: the run trained nothing and says so (after logging each step).
    CHECK_THROWS_WITH_AS(t.run(), Contains("every step of this run (9 of 9, steps 1 to 9) was skipped"), Error);
    CHECK(lines(d / "metrics.jsonl").size() == 9);
    CHECK(lines(d / "metrics.jsonl").front().find("skipped_nonfinite") != std::string::npos);
  }
}

TEST_CASE("trainer: bad configuration values name the flag") {
  train::TrainConfig c;
  c.lr = -1;
  CHECK_THROWS_WITH_AS(c.validate(), Contains("--lr must be > 0, got -1"), Error);
  c = {};
  c.model.kind = "sparse";
  CHECK_THROWS_WITH_AS(c.validate(), Contains("unknown model 'sparse'"), Error);
  c = {};
  c.stop_at = 5;
  CHECK_THROWS_WITH_AS(c.validate(), Contains("--stop-at needs --ckpt-dir"), Error);
  auto j = train::TrainConfig{}.to_json();
  j["bogus"] = 1;
  CHECK_THROWS_WITH_AS(train::TrainConfig::from_json(j), Contains("unknown key 'bogus'"), Error);
  // The JSON form round-trips.
  train::TrainConfig d;
  d.model.top_n = 3;
  d.lr = 0.25;
  CHECK(train::TrainConfig::from_json(d.to_json()).to_json() == d.to_json());
}
