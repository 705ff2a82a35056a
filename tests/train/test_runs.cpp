// Runs that share or reuse files: one run per folder (locks), metrics lines written whole,
// refusing to destroy earlier work, re-running a finished run, runs that trained nothing, the
// dense baseline's size and the capacity-factor note.
#include <doctest/doctest.h>
#include <fmt/format.h>
#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "core/ops/creation.h"
#include "layers/moe/routing.h"
#include "tests/test_files.h"
#include "train/run_lock.h"
#include "train/trainer.h"

namespace core = moegrad::core;
namespace fs = std::filesystem;
namespace json = moegrad::json;
namespace train = moegrad::train;
using doctest::Contains;
using moegrad::Error;
using moegrad::test::TempDir;

namespace {

doctest::Contains has(const std::string& text) { return doctest::Contains(text.c_str()); }

train::TrainConfig tiny(const TempDir& tmp) {
  train::TrainConfig c;
  c.model.dim = 8;
  c.model.hidden = 8;
  c.model.experts = 4;
  c.input_dim = 6;
  c.clusters = 3;
  c.seq_len = 6;
  c.batch_size = 4;
  c.steps = 6;
  c.warmup = 1;
  c.eval_every = 3;
  c.eval_batches = 1;
  c.log_every = 1;
  c.progress = false;
  c.ckpt_dir = tmp.file("ckpt");
  c.ckpt_every = 2;
  c.keep_last = 0;
  c.metrics = tmp.file("m.jsonl");
  return c;
}

std::vector<std::string> lines_of(const std::string& path) {
  std::ifstream in(path);
  std::vector<std::string> out;
  for (std::string l; std::getline(in, l);) out.push_back(l);
  return out;
}

std::vector<std::int64_t> steps_of(const std::string& path) {
  std::vector<std::int64_t> out;
  for (const auto& l : lines_of(path)) out.push_back(json::parse(l).at("step").get<std::int64_t>());
  return out;
}

std::string read(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), {}};
}

}  // namespace

TEST_CASE("runs: a second lock on a folder fails at once naming the process; closing releases it") {
  TempDir tmp;
  const std::string dir = tmp.file("ckpt");
  {
    train::FolderLock first(dir);
    CHECK(fs::is_directory(dir));
    CHECK(tmp.entries() == std::vector<std::string>{"ckpt"});
    CHECK(fs::is_empty(dir));  // no lock file among the checkpoints
    CHECK_THROWS_WITH_AS(train::FolderLock{dir},
                         has(fmt::format("the checkpoint folder '{}' is in use by another run (process {})", dir,
                                              ::getpid())),
                         Error);
  }
  train::FolderLock again(dir);  // released with the descriptor
}

TEST_CASE("runs: a second trainer on the same checkpoint folder is refused before it reads or cleans it") {
  TempDir tmp;
  auto c = tiny(tmp);
  train::Trainer first(c, nullptr);
  // A temporary of a live writer must survive the refused constructor (it removes stale ones).
  const std::string temporary = tmp.file("ckpt/.step-000000002.h5.tmp-999999-0");
  std::ofstream(temporary) << "x";
  c.metrics = tmp.file("other.jsonl");
  CHECK_THROWS_WITH_AS(train::Trainer(c, nullptr), Contains("is in use by another run (process"), Error);
  CHECK(fs::exists(temporary));
  fs::remove(temporary);
  first.run();
  train::Trainer after(c, nullptr);  // run() released the lock
}

TEST_CASE("runs: two runs cannot share a metrics file") {
  TempDir tmp;
  train::MetricsFile a(tmp.file("m.jsonl")), b(tmp.file("m.jsonl"));
  a.lock();
  CHECK_THROWS_WITH_AS(b.lock(), has("the metrics file '" + tmp.file("m.jsonl") + "' is in use by another run"),
                       Error);
  // Not regular files (shared by nature) are not locked, sized, truncated or rewritten.
  train::MetricsFile n1("/dev/null"), n2("/dev/null");
  n1.lock();
  n2.lock();
  CHECK(n2.size() == 0);
  CHECK(n2.keep_until(0) == 0);
  n2.write(json::Json{{"step", 1}});
}

TEST_CASE("runs: metrics lines from concurrent writers stay whole") {
  // Two writers append long records (longer than any stream buffer) to one file at once; every
  // line must come out whole: no "{{", no line cut in two, none lost.
  TempDir tmp;
  const std::string path = tmp.file("m.jsonl");
  constexpr int kLines = 200;
  auto writer = [&](int id) {
    train::MetricsFile m(path);
    const std::string pad(70000 + id * 1000, static_cast<char>('a' + id));
    for (int i = 0; i < kLines; ++i)
      m.write(json::Json{{"writer", id}, {"step", i}, {"pad", pad}});
  };
  std::thread t0(writer, 0), t1(writer, 1);
  t0.join();
  t1.join();
  const auto lines = lines_of(path);
  REQUIRE(lines.size() == 2 * kLines);
  std::vector<int> count(2, 0);
  for (const auto& l : lines) {
    const json::Json v = json::parse(l);  // throws for a cut or merged line
    const auto id = v.at("writer").get<std::int64_t>();
    CHECK(v.at("pad").get<std::string>().size() == static_cast<std::size_t>(70000 + id * 1000));
    ++count[static_cast<std::size_t>(id)];
  }
  CHECK(count == std::vector<int>{kLines, kLines});
}

TEST_CASE("runs: keep_until drops the records past a step and an unfinished line, by replacing the file") {
  TempDir tmp;
  const std::string path = tmp.file("m.jsonl");
  std::ofstream(path) << "{\"step\":1}\n{\"step\":2}\n{\"note\":\"kept\"}\n{\"step\":3}\n{\"step\":4}\n{\"ste";
  train::MetricsFile m(path);
  m.lock();
  CHECK(m.keep_until(2) == 3);
  m.write(json::Json{{"step", 3}});
  CHECK(lines_of(path) == std::vector<std::string>{"{\"step\":1}", "{\"step\":2}", "{\"note\":\"kept\"}", "{\"step\":3}"});
  CHECK(tmp.entries() == std::vector<std::string>{"m.jsonl"});
  CHECK(m.keep_until(5) == 0);
  // The new file is the one locked.
  train::MetricsFile other(path);
  CHECK_THROWS_WITH_AS(other.lock(), Contains("is in use by another run"), Error);
}

TEST_CASE("runs: --resume none into a folder with checkpoints is refused unless --overwrite") {
  TempDir tmp;
  auto c = tiny(tmp);
  train::Trainer(c, nullptr).run();
  const std::string before = read(tmp.file("ckpt/step-000000006.h5")), metrics = read(c.metrics);
  c.resume = "none";
  CHECK_THROWS_WITH_AS(train::Trainer(c, nullptr).run(),
                       has("--resume none but '" + c.ckpt_dir +
                                "' already holds 3 checkpoints (steps 2 to 6): pass --overwrite"),
                       Error);
  CHECK(read(tmp.file("ckpt/step-000000006.h5")) == before);
  CHECK(read(c.metrics) == metrics);
  // A fresh run with --overwrite removes them at start and writes its own.
  c.overwrite = true;
  c.stop_at = 2;
  train::Trainer(c, nullptr).run();
  CHECK(train::CheckpointDir(c.ckpt_dir).list() == std::vector<std::string>{tmp.file("ckpt/step-000000002.h5")});
  CHECK(steps_of(c.metrics) == std::vector<std::int64_t>{1, 2});
}

TEST_CASE("runs: resuming from an explicit checkpoint refuses to replace later ones unless --overwrite") {
  TempDir tmp;
  auto c = tiny(tmp);
  train::Trainer(c, nullptr).run();
  c.resume = tmp.file("ckpt/step-000000002.h5");
  CHECK_THROWS_WITH_AS(train::Trainer(c, nullptr).run(),
                       Contains("holds 2 checkpoints (steps 4 to 6) past step 2, where this run starts"), Error);
  c.overwrite = true;
  c.stop_at = 3;
  const auto r = train::Trainer(c, nullptr).run();
  CHECK(r.start_step == 2);
  CHECK(train::CheckpointDir(c.ckpt_dir).list() ==
        std::vector<std::string>{tmp.file("ckpt/step-000000002.h5"), tmp.file("ckpt/step-000000003.h5")});
  // The resumed run's metrics continue after step 2, without the old run's later records.
  CHECK(steps_of(c.metrics) == std::vector<std::int64_t>{1, 2, 3});
}

TEST_CASE("runs: a fresh run refuses a non-empty metrics file unless --overwrite; a resumed run appends") {
  TempDir tmp;
  auto c = tiny(tmp);
  c.ckpt_dir.clear();
  std::ofstream(c.metrics) << "{\"step\":1,\"loss\":0.5}\n";
  CHECK_THROWS_WITH_AS(train::Trainer(c, nullptr).run(),
                       has("--metrics '" + c.metrics + "' already holds 22 bytes and this run starts from step 0"),
                       Error);
  CHECK(read(c.metrics) == "{\"step\":1,\"loss\":0.5}\n");
  c.overwrite = true;
  train::Trainer(c, nullptr).run();
  CHECK(steps_of(c.metrics) == std::vector<std::int64_t>{1, 2, 3, 4, 5, 6});

  // Stopped at 4 with metrics to 4, then the records of steps 5 and 6 of some other attempt:
  // the resumed run drops them and writes its own, once each.
  auto s = tiny(tmp);
  s.metrics = tmp.file("resumed.jsonl");
  s.stop_at = 4;
  train::Trainer(s, nullptr).run();
  std::ofstream(s.metrics, std::ios::app) << "{\"step\":5}\n{\"step\":6}\n";
  s.stop_at = 0;
  train::Trainer(s, nullptr).run();
  CHECK(steps_of(s.metrics) == std::vector<std::int64_t>{1, 2, 3, 4, 5, 6});
  CHECK(json::parse(lines_of(s.metrics).back()).contains("loss"));
}

TEST_CASE("runs: re-running a finished run says so and reports the stored losses") {
  TempDir tmp;
  const auto c = tiny(tmp);
  const auto done = train::Trainer(c, nullptr).run();
  CHECK_FALSE(done.nothing_to_do);
  CHECK(std::isfinite(done.last_loss));
  CHECK(std::isfinite(done.eval_loss));
  const auto again = train::Trainer(c, nullptr).run();
  CHECK(again.nothing_to_do);
  CHECK(again.start_step == 6);
  CHECK(again.end_step == 6);
  CHECK(again.last_loss == done.last_loss);  // stored exactly in the checkpoint
  CHECK(again.eval_loss == done.eval_loss);
  CHECK(again.summary().rfind("nothing to do: the run is already at its last step (step 6 of 6); stored: last loss ", 0) == 0);
  CHECK(again.summary().find(fmt::format("eval loss {:.5f}", done.eval_loss)) != std::string::npos);
  CHECK(steps_of(c.metrics) == std::vector<std::int64_t>{1, 2, 3, 4, 5, 6});
}

TEST_CASE("runs: --skip-nonfinite logs the real step and lr, and a run that trained nothing fails") {
  TempDir tmp;
  auto c = tiny(tmp);
  c.ckpt_dir.clear();
  c.skip_nonfinite = true;
  train::Trainer t(c, nullptr);
  core::fill_(t.model().parameter("in_proj.weight").value(), NAN);
  CHECK_THROWS_WITH_AS(t.run(),
                       Contains("every step of this run (6 of 6, steps 1 to 6) was skipped as non-finite "
                                "(--skip-nonfinite): nothing was trained"),
                       Error);
  const auto lines = lines_of(c.metrics);
  REQUIRE(lines.size() == 6);
  const moegrad::optim::WarmupCosine schedule(c.lr, c.warmup, c.steps, c.min_lr);
  for (std::size_t i = 0; i < lines.size(); ++i) {
    const json::Json v = json::parse(lines[i]);
    CHECK(v.at("step").get<std::int64_t>() == static_cast<std::int64_t>(i) + 1);
    CHECK(v.contains("skipped_nonfinite"));
    CHECK(v.at("lr").get<double>() == schedule.lr_at(static_cast<std::int64_t>(i)));
  }
  CHECK(json::parse(lines[3]).at("lr").get<double>() > 0);
}

TEST_CASE("runs: a skipped step's progress line shows its step and lr") {
  TempDir tmp;
  const std::string path = tmp.file("log");
  std::FILE* f = std::fopen(path.c_str(), "w");
  REQUIRE(f);
  train::Progress p(f, false, 1);
  train::StepReport r;
  r.step = 3;
  r.total = 9;
  r.loss = NAN;
  r.lr = 2.5e-3;
  r.skipped = "[anomaly] forward of add";
  p.update(r);
  std::fclose(f);
  CHECK(read(path).rfind("step 3/9  skipped (loss or gradients NaN/Inf)  lr 2.50e-03", 0) == 0);
}

TEST_CASE("runs: a run with some skipped steps counts them and succeeds") {
  TempDir tmp;
  auto c = tiny(tmp);
  c.ckpt_dir.clear();
  c.skip_nonfinite = true;
  c.steps = 8;
  c.lr = 1e6;  // the largest --lr on the largest z-loss: the first update makes later steps non-finite
  c.model.router_z_loss_coef = 1e6;
  c.clip = 0;
  c.warmup = 0;
  c.optimizer = "sgd";
  c.momentum = 0;
  train::Trainer t(c, nullptr);
  const auto r = t.run();
  CHECK(r.skipped_steps >= 1);
  CHECK(r.skipped_steps < c.steps);  // some steps trained: the run succeeds
  CHECK(std::isfinite(r.last_loss));
  CHECK(r.summary().find(fmt::format(", {} step(s) skipped as non-finite", r.skipped_steps)) != std::string::npos);
}

TEST_CASE("runs: the dense baseline's active parameters per token match the st_moe model's") {
  for (const auto& [dim, hidden, experts, top_n, layers] :
       std::vector<std::tuple<int, int, int, int, int>>{{32, 32, 16, 2, 1}, {8, 8, 4, 2, 2}, {16, 24, 6, 3, 1}}) {
    train::ModelOptions o;
    o.dim = dim;
    o.hidden = hidden;
    o.experts = experts;
    o.top_n = top_n;
    o.layers = layers;
    CAPTURE(dim);
    CAPTURE(experts);
    core::Generator g1(0), g2(0);
    const auto moe = train::make_regression_model(o, 16, 16, &g1);
    o.kind = "dense";
    const auto dense = train::make_regression_model(o, 16, 16, &g2);
    // Counted from the real tensors: a dense model's parameters are all active; an st_moe
    // token passes the gate and top_n of the experts.
    CHECK(dense->active_parameters() == dense->num_parameters());
    std::int64_t experts_numel = 0;
    for (const auto& [name, p] : moe->named_parameters())
      if (name.find(".moe.experts.") != std::string::npos) experts_numel += p.value().numel();
    CHECK(moe->active_parameters() == moe->num_parameters() - experts_numel / experts * (experts - top_n));
    CHECK(dense->st_moe_active_parameters() == moe->active_parameters());
    // As close as a whole hidden unit allows (3 * dim + 3 parameters per unit and layer).
    const std::int64_t diff = std::abs(dense->active_parameters() - moe->active_parameters());
    CHECK(2 * diff <= layers * (3 * dim + 3));
  }
  // The default run: 16 experts of 32 hidden units on dim 32.
  train::TrainConfig c;
  core::Generator g1(0), g2(0);
  const auto moe = train::make_regression_model(c.model, 16, 16, &g1);
  c.model.kind = "dense";
  CHECK(train::dense_hidden(c.model) == 69);
  const auto dense = train::make_regression_model(c.model, 16, 16, &g2);
  CHECK(moe->active_parameters() == 8048);
  CHECK(dense->active_parameters() == 8048 - 49);
}

TEST_CASE("runs: a capacity factor below the minimum capacity is noted once, from the layer's rule") {
  train::ModelOptions o;
  o.experts = 16;
  o.capacity_factor = 0.01;
  // 16 tokens, 16 experts: int(16 * cf / 16) > 4 needs cf >= 5.
  CHECK(moegrad::nn::moe::expert_capacity(16, 0.01, 16, 4) == 4);
  CHECK(train::capacity_factor_note(o, 16) ==
        "note: --capacity-factor 0.01 gives capacity 4 = the minimum (min_expert_capacity) for 16 tokens per "
        "sequence and 16 experts: the factor has no effect below 5");
  o.capacity_factor = 6;
  CHECK(train::capacity_factor_note(o, 16).empty());
  o.capacity_factor = 0.01;
  o.dropless = true;
  CHECK(train::capacity_factor_note(o, 16).empty());
  o.dropless = false;
  CHECK(train::capacity_factor_note(o, 4).find("has no effect: with 4 tokens per sequence and 16 experts") !=
        std::string::npos);
  o.kind = "lucidrains";
  o.top_n = 2;
  CHECK(train::capacity_factor_note(o, 64).find("no effect below 1.25") != std::string::npos);  // 64 * cf / 16 >= 5
}
