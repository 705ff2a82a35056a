// Checkpoint writes that fail and files damaged anywhere: a write failure (injected with
// MOEGRAD_FAULT_WRITE_FAIL_AFTER_BYTES) is one line, removes its temporary and leaves earlier
// checkpoints intact; and a deterministic corruption sample (byte and bit flips anywhere,
// zeroed blocks, truncations, appended bytes) where every mutated file either loads
// identically or fails with one clear line (scripts/fuzz-checkpoints runs thousands).
#include <doctest/doctest.h>
#include <fmt/format.h>

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <string>

#include "core/ops.h"
#include "train/checkpoint.h"
#include "train/hdf5.h"
#include "tests/test_files.h"

namespace core = moegrad::core;
namespace h5 = moegrad::h5;
namespace train = moegrad::train;
namespace fs = std::filesystem;
using doctest::Contains;
using moegrad::Error;

namespace {

using moegrad::test::read_bytes;

using moegrad::test::TempDir;

train::Checkpoint small_checkpoint(std::int64_t step) {
  core::Generator g(static_cast<std::uint64_t>(step) + 1);
  train::Checkpoint ck;
  ck.model.insert("net.0.weight", core::randn({8, 4}, {}, &g));
  ck.model.insert("net.0.bias", core::zeros({8}));
  ck.model.insert("mask", core::from_vector<bool>({true, false, true}, {3}));
  ck.optimizer.insert("net.0.weight/exp_avg", core::randn({8, 4}, {}, &g));
  ck.optimizer.insert("net.0.weight/step", core::scalar_tensor(3, {core::DType::f32}));
  ck.step = step;
  ck.epoch = 1;
  ck.cursor = {{"train", step}, {"eval", 2}};
  ck.rng = {{"model", {9, 64}}};
  ck.config_json = R"({"dim":4,"lr":0.01})";
  ck.attributes = {{"moegrad_version", "0.1"}};
  return ck;
}

// Sets an environment variable for one scope.
struct ScopedEnv {
  std::string name;
  ScopedEnv(std::string n, const std::string& value) : name(std::move(n)) { ::setenv(name.c_str(), value.c_str(), 1); }
  ~ScopedEnv() { ::unsetenv(name.c_str()); }
};

}  // namespace

TEST_CASE("checkpoint: a failed write is one line, leaves no temporary and keeps earlier checkpoints") {
  TempDir dir;
  train::CheckpointDir ckpts(dir.file("ckpt"), 1);
  const std::string first = ckpts.save(small_checkpoint(2));
  const std::string before = read_bytes(first);
  for (const char* budget : {"0", "1000"}) {
    ScopedEnv fault("MOEGRAD_FAULT_WRITE_FAIL_AFTER_BYTES", budget);
    std::string message;
    try {
      ckpts.save(small_checkpoint(4));
    } catch (const Error& e) {
      message = e.what();
    }
    INFO("budget ", budget);
    CHECK(message == fmt::format("[hdf5] cannot write '{}': No space left on device", ckpts.path_for(4)));
    // The folder is as it was: no temporary, no step 4, step 2 not rotated away and intact.
    std::vector<std::string> names;
    for (const auto& e : fs::directory_iterator(ckpts.dir())) names.push_back(e.path().filename().string());
    CHECK(names == std::vector<std::string>{"step-000000002.h5"});
    CHECK(read_bytes(first) == before);
    CHECK(train::load_checkpoint(first).step == 2);
  }
  // Without the fault the next save works and rotates.
  CHECK(ckpts.save(small_checkpoint(4)) == ckpts.path_for(4));
  CHECK(ckpts.list() == std::vector<std::string>{ckpts.path_for(4)});
  // A write into a folder that vanished fails the same way, naming the file.
  fs::remove_all(ckpts.dir());
  CHECK_THROWS_WITH_AS(train::save_checkpoint(ckpts.path_for(6), small_checkpoint(6)),
                       Contains("cannot create its temporary file"), Error);
}

// One mutation of a file's bytes, drawn from `rng`: what the fuzz script does, in small.
std::string mutate(const std::string& original, std::mt19937_64& rng, std::string& what) {
  std::string b = original;
  const auto pick = [&](std::uint64_t n) { return static_cast<std::size_t>(rng() % n); };
  switch (pick(6)) {
    case 0: {
      const std::size_t at = pick(b.size());
      b[at] = static_cast<char>(b[at] ^ static_cast<char>(1 + pick(255)));
      what = fmt::format("byte {} changed", at);
      break;
    }
    case 1: {
      const std::size_t at = pick(b.size());
      const int bit = static_cast<int>(pick(8));
      b[at] = static_cast<char>(b[at] ^ (1 << bit));
      what = fmt::format("bit {} of byte {} flipped", bit, at);
      break;
    }
    case 2: {
      const std::size_t at = pick(b.size()), n = 1 + pick(64);
      for (std::size_t i = at; i < std::min(b.size(), at + n); ++i) b[i] = '\0';
      what = fmt::format("{} bytes zeroed at {}", n, at);
      break;
    }
    case 3: {
      const std::size_t n = pick(b.size());
      b.resize(n);
      what = fmt::format("truncated to {} bytes", n);
      break;
    }
    case 4: {
      const std::size_t n = 1 + pick(100);
      for (std::size_t i = 0; i < n; ++i) b.push_back(static_cast<char>(rng()));
      what = fmt::format("{} bytes appended", n);
      break;
    }
    default: {  // a byte in the first 4 KiB: the user block, superblock and root metadata
      const std::size_t at = pick(std::min<std::size_t>(b.size(), 4096));
      b[at] = static_cast<char>(b[at] ^ static_cast<char>(1 + pick(255)));
      what = fmt::format("byte {} changed (header)", at);
    }
  }
  return b;
}

TEST_CASE("checkpoint: corrupted copies either load identically or fail with one line (200 mutations)") {
  TempDir dir;
  const std::string good = dir.file("step-000000005.h5");
  const train::Checkpoint ck = small_checkpoint(5);
  train::save_checkpoint(good, ck);
  const std::uint64_t want = train::content_digest(train::load_checkpoint(good));
  CHECK(want == train::content_digest(ck));
  const std::string original = read_bytes(good);
  std::mt19937_64 rng(20261202);
  int identical = 0, errors = 0;
  const std::string path = dir.file("mutated.h5");
  for (int i = 0; i < 200; ++i) {
    std::string what, bytes;
    do {
      bytes = mutate(original, rng, what);
    } while (bytes == original);  // zeroing bytes that are zero changes nothing
    std::ofstream(path, std::ios::binary | std::ios::trunc) << bytes;
    INFO("mutation ", i, ": ", what);
    try {
      const train::Checkpoint back = train::load_checkpoint(path);
      CHECK(train::content_digest(back) == want);  // a load must be the saved content, exactly
      CHECK(back.step == 5);
      ++identical;
    } catch (const Error& e) {
      const std::string m = e.what();
      CHECK(m.rfind(fmt::format("[checkpoint] '{}': ", path), 0) == 0);
      CHECK(m.find('\n') == std::string::npos);
      CHECK(m.size() < 400);
      ++errors;
    }
  }
  MESSAGE(fmt::format("200 mutations: {} loaded identically, {} clear errors", identical, errors));
  CHECK(identical + errors == 200);
  CHECK(errors == 200);  // every change is caught, by the file checksum first
}
