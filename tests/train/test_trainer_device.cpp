// The trainer on a device: --device spelling, the error without a GPU (before any work), and
// where a GPU is present, the same losses on both devices and a GPU run whose checkpoint
// resumes on the CPU (and the reverse).
#include <doctest/doctest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "core/build_info.h"
#include "tests/test_files.h"
#include "train/trainer.h"
#include "tests/cuda/cuda_test.h"

namespace core = moegrad::core;
namespace fs = std::filesystem;
namespace train = moegrad::train;
using doctest::Contains;
using moegrad::Error;

namespace {

train::TrainConfig tiny(const std::string& task, const std::string& dir, const std::string& device) {
  train::TrainConfig c;
  c.task = task;
  c.device = device;
  c.model.dim = 8;
  c.model.hidden = 8;
  c.model.experts = 4;
  c.input_dim = 6;
  c.clusters = 3;
  c.vocab = 12;
  c.seq_len = 6;
  c.batch_size = 4;
  c.steps = 6;
  c.warmup = 1;
  c.eval_every = 3;
  c.eval_batches = 1;
  c.progress = false;
  c.ckpt_dir = dir;
  c.ckpt_every = 3;
  return c;
}

}  // namespace

TEST_CASE("trainer: --device is cpu, cuda or cuda:N and a missing CUDA device stops before any work") {
  moegrad::test::TempDir tmp;
  train::TrainConfig c = tiny("clustered-regression", tmp.file("ckpt"), "gpu");
  CHECK_THROWS_WITH_AS(c.validate(), Contains("[config] --device must be cpu, cuda or cuda:N, got 'gpu'"), Error);
  for (const char* ok : {"cpu", "cuda", "cuda:1"}) {
    c.device = ok;
    CHECK_NOTHROW(c.validate());
  }
  const int gpus = core::build_info().cuda_devices;
  if (gpus == 0) {
    c.device = "cuda";
    CHECK_THROWS_WITH_AS(train::Trainer(c, nullptr), Contains("[train] --device cuda:0 but no CUDA device is present"),
                         Error);
    c.device = "cuda:1";
    CHECK_THROWS_WITH_AS(train::Trainer(c, nullptr), Contains("[train] --device cuda:1 but no CUDA device is present"),
                         Error);
    CHECK_FALSE(fs::exists(tmp.file("ckpt")));  // nothing was created
  } else {
    c.device = fmt::format("cuda:{}", gpus);
    const std::string want = fmt::format("[train] --device cuda:{} but only", gpus);
    CHECK_THROWS_WITH_AS(train::Trainer(c, nullptr), Contains(want.c_str()), Error);
  }
  c.device = "cpu";
  train::Trainer cpu(c, nullptr);
  CHECK(cpu.device() == core::Device::cpu());
  CHECK(cpu.model().device() == core::Device::cpu());
}

TEST_CASE("trainer: a GPU run's checkpoint resumes on the CPU and a CPU run's on the GPU") {
  SKIP_WITHOUT_CUDA();
  for (const char* task : {"clustered-regression", "sequence"}) {
    CAPTURE(task);
    for (const auto& [first, second] : {std::pair{"cuda", "cpu"}, std::pair{"cpu", "cuda"}}) {
      CAPTURE(first);
      moegrad::test::TempDir tmp;
      auto c1 = tiny(task, tmp.file("ckpt"), first);
      c1.stop_at = 3;
      train::Trainer part1(c1, nullptr);
      CHECK(part1.model().device() == core::Device::parse(first));
      const auto r1 = part1.run();
      CHECK(r1.end_step == 3);
      // The checkpoint holds host tensors.
      for (const auto& [key, t] : part1.checkpoint(3).model) CHECK(t.device() == core::Device::cpu());
      for (const auto& [key, t] : part1.checkpoint(3).optimizer) CHECK(t.device() == core::Device::cpu());

      train::Trainer part2(tiny(task, tmp.file("ckpt"), second), nullptr);
      const auto r2 = part2.run();
      CHECK(r2.start_step == 3);
      CHECK(r2.end_step == 6);
      CHECK(std::isfinite(r2.last_loss));
      CHECK(part2.model().device() == core::Device::parse(second));
      // The resumed model holds the checkpoint's parameters on its own device.
      for (const auto& [name, p] : part2.optimizer().named_parameters()) CHECK(p.device() == part2.device());
    }
  }
}

namespace {
// "loss" of every line of a metrics file, in order.
std::vector<double> losses(const fs::path& metrics) {
  std::vector<double> out;
  std::ifstream in(metrics);
  for (std::string line; std::getline(in, line);) {
    const auto at = line.find("\"loss\":");
    if (at != std::string::npos) out.push_back(std::stod(line.substr(at + 7)));
  }
  return out;
}
}  // namespace

TEST_CASE("trainer: a short run gives the same losses on the GPU as on the CPU (1e-4)") {
  SKIP_WITHOUT_CUDA();
  for (const char* task : {"clustered-regression", "sequence"}) {
    CAPTURE(task);
    moegrad::test::TempDir tmp;
    std::vector<double> per_device[2];
    int i = 0;
    for (const char* device : {"cpu", "cuda"}) {
      auto c = tiny(task, tmp.file(std::string("ckpt-") + device), device);
      c.steps = 20;
      c.model.noise_gates = true;  // Philox draws on the device: the same noise on both
      c.log_every = 1;
      c.metrics = tmp.file(std::string("metrics-") + device + ".jsonl");
      train::Trainer(c, nullptr).run();
      per_device[i++] = losses(c.metrics);
    }
    REQUIRE(per_device[0].size() >= 20);
    REQUIRE(per_device[1].size() == per_device[0].size());
    for (std::size_t s = 0; s < per_device[0].size(); ++s) {
      CAPTURE(s);
      CHECK(std::abs(per_device[1][s] - per_device[0][s]) <= 1e-4 * std::max(1.0, std::abs(per_device[0][s])));
    }
  }
}
