// train/checkpoint: round trips, the documented layout as h5py sees it, strict loading with
// one-line errors, and the checkpoint folder (rotation, latest, stale temporaries).
#include <doctest/doctest.h>
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>
#include <string>

#include "core/ops.h"
#include "layers/linear.h"
#include "layers/sequential.h"
#include "train/checkpoint.h"
#include "train/hdf5.h"
#include "tests/test_files.h"

namespace core = moegrad::core;
namespace h5 = moegrad::h5;
namespace nn = moegrad::nn;
namespace train = moegrad::train;
namespace fs = std::filesystem;
using core::DType;
using core::Tensor;
using doctest::Contains;
using moegrad::Error;

namespace {

using moegrad::test::read_bytes;

using moegrad::test::TempDir;
using moegrad::test::flip_byte;
using moegrad::test::have_h5py;



// A model with dotted keys: net.0.weight [8, 4], net.0.bias, net.1.weight [2, 8], net.1.bias.
std::shared_ptr<nn::Module> make_model(std::uint64_t seed) {
  core::Generator g(seed);
  auto net = std::make_shared<nn::Sequential>();
  net->push_back(std::make_shared<nn::Linear>(4, 8, true, core::TensorOptions{}, &g));
  net->push_back(std::make_shared<nn::Linear>(8, 2, true, core::TensorOptions{}, &g));
  struct Model : nn::Module {};
  auto m = std::make_shared<Model>();
  m->register_module("net", net);
  return m;
}

// Adam-like optimizer state: "<param>/exp_avg", "<param>/exp_avg_sq", "<param>/step" (0-d).
nn::StateDict make_optimizer_state(const nn::Module& m) {
  core::Generator g(11);
  nn::StateDict sd;
  for (const auto& [name, p] : m.named_parameters()) {
    sd.insert(name + "/exp_avg", core::randn(p.value().shape(), {}, &g));
    sd.insert(name + "/exp_avg_sq", core::rand(p.value().shape(), {}, &g));
    sd.insert(name + "/step", core::scalar_tensor(42, {DType::f32}));
  }
  return sd;
}

train::Checkpoint make_checkpoint(const nn::Module& m) {
  train::Checkpoint ck;
  ck.model = m.state_dict();
  ck.optimizer = make_optimizer_state(m);
  ck.step = 1234;
  ck.epoch = 3;
  ck.cursor = {{"train", 1234}, {"eval", 7}};
  ck.rng = {{"model", {5, 96}}, {"data", {0xFEDCBA9876543210ull, (1ull << 63) + 5}}};
  ck.config_json = "{\"name\":\"caf\xC3\xA9 moe\",\"dim\":4}";
  ck.attributes = {{"moegrad_version", "0.1"}, {"note", "na\xC3\xAFve"}};
  return ck;
}

// `got` holds want's keys, in sorted order when read from a file (else in want's order).
void check_same_dict(const nn::StateDict& got, const nn::StateDict& want, bool sorted = true) {
  std::vector<std::string> want_keys = want.keys();
  if (sorted) std::sort(want_keys.begin(), want_keys.end());
  INFO("got: ", fmt::format("{}", fmt::join(got.keys(), ", ")));
  INFO("want: ", fmt::format("{}", fmt::join(want_keys, ", ")));
  REQUIRE(got.keys() == want_keys);
  for (const auto& [key, value] : want) {
    const Tensor& t = got.at(key);
    CHECK_MESSAGE(t.shape() == value.shape(), key);
    CHECK_MESSAGE(t.dtype() == value.dtype(), key);
    CHECK_MESSAGE(t.to_vector<double>() == value.to_vector<double>(), key);
  }
}

// Saves a valid checkpoint, then lets `damage` change the file (opened read-write) and
// re-seals it, so that the checks behind the file checksum are what the load meets.
std::string damaged(const TempDir& dir, const std::string& name, const std::function<void(h5::File&)>& damage) {
  const std::string path = dir.file(name);
  train::save_checkpoint(path, make_checkpoint(*make_model(1)));
  h5::File f = h5::File::open(path, h5::File::Mode::read_write);
  damage(f);
  f.close();
  h5::seal(path);
  return path;
}

// load_checkpoint throws one line naming the file and containing `problem`; the file stays.
void check_load_fails(const std::string& path, const std::string& problem) {
  const std::string before = read_bytes(path);
  std::string message;
  try {
    train::load_checkpoint(path);
  } catch (const Error& e) {
    message = e.what();
  }
  INFO("message: ", message);
  CHECK(message.rfind(fmt::format("[checkpoint] '{}': ", path), 0) == 0);
  CHECK(message.find(problem) != std::string::npos);
  CHECK(message.find('\n') == std::string::npos);
  CHECK(read_bytes(path) == before);
}

}  // namespace

TEST_CASE("checkpoint: every field round trips, and the model loads back strictly") {
  TempDir dir;
  const std::string path = dir.file("ck.h5");
  auto model = make_model(1);
  train::Checkpoint ck = make_checkpoint(*model);
  ck.model.insert("extra.scalar", core::scalar_tensor(2.5, {DType::f64}));
  ck.model.insert("extra.empty", core::zeros({0, 3}));
  ck.model.insert("extra.mask", core::from_vector<bool>({true, false}, {2}));
  ck.optimizer.insert("global_step", core::scalar_tensor(9, {DType::i64}));
  train::save_checkpoint(path, ck);
  {
    std::vector<std::string> files;
    for (const auto& e : fs::directory_iterator(dir.path)) files.push_back(e.path().filename().string());
    CHECK(files == std::vector<std::string>{"ck.h5"});  // no temporary left
  }

  // The same content gives the same bytes (no timestamps).
  train::save_checkpoint(dir.file("again.h5"), ck);
  CHECK(read_bytes(dir.file("again.h5")) == read_bytes(path));
  fs::remove(dir.file("again.h5"));

  const train::Checkpoint back = train::load_checkpoint(path);
  nn::StateDict want_model = ck.model;
  want_model.set("extra.mask", core::from_vector<std::uint8_t>({1, 0}, {2}));  // bool reads back as u8
  check_same_dict(back.model, want_model);
  check_same_dict(back.optimizer, ck.optimizer);
  CHECK(back.step == 1234);
  CHECK(back.epoch == 3);
  CHECK(back.cursor == ck.cursor);
  CHECK(back.rng == ck.rng);
  CHECK(back.config_json == ck.config_json);
  CHECK(back.attributes == ck.attributes);
  CHECK_NOTHROW(train::check_checkpoint(path));

  // Into a fresh model, strictly (PyTorch's keys and shapes); extra keys are refused.
  auto other = make_model(2);
  CHECK_THROWS_WITH_AS(other->load_state_dict(back.model), Contains("unexpected keys"), Error);
  const train::Checkpoint plain = [&] {
    train::Checkpoint c = make_checkpoint(*model);
    train::save_checkpoint(path, c);
    return train::load_checkpoint(path);
  }();
  other->load_state_dict(plain.model);
  check_same_dict(other->state_dict(), model->state_dict(), /*sorted=*/false);

  // Generators resume where they were.
  core::Generator g(77);
  (void)core::randn({10}, {}, &g);
  train::Checkpoint with_rng;
  with_rng.rng["gate"] = train::RngState::of(g);
  train::save_checkpoint(path, with_rng);
  core::Generator h;
  train::load_checkpoint(path).rng.at("gate").restore(h);
  CHECK(core::randn({5}, {}, &h).to_vector<float>() == core::randn({5}, {}, &g).to_vector<float>());
}

TEST_CASE("checkpoint: h5py reads the documented layout") {
  if (!have_h5py()) {
    MESSAGE("/usr/bin/python3 with h5py not available; skipped");
    return;
  }
  TempDir dir;
  const std::string path = dir.file("step-000001234.h5");
  train::save_checkpoint(path, make_checkpoint(*make_model(1)));
  const std::string script = dir.file("layout.py");
  std::ofstream(script) << R"PY(import sys, h5py, numpy as np
def crc64(data):  # CRC-64/XZ
    c = 0xFFFFFFFFFFFFFFFF
    for b in data:
        c ^= b
        for _ in range(8):
            c = (c >> 1) ^ (0xC96C5795D7870F42 if c & 1 else 0)
    return c ^ 0xFFFFFFFFFFFFFFFF
raw = open(sys.argv[1], 'rb').read()
magic, kind, digest, n = raw[:512].split(b'\n')[0].split(b' ')
assert (magic, kind) == (b'moegrad-file-digest', b'crc64') and int(n) == len(raw) - 512, raw[:80]
assert int(digest, 16) == crc64(raw[512:])
with h5py.File(sys.argv[1], 'r') as f:
    assert f.userblock_size == 512
    def vlen_utf8(name):
        t = h5py.check_string_dtype(f.attrs.get_id(name).dtype)
        return t is not None and t.encoding == 'utf-8' and t.length is None
    assert f.attrs['format'] == 'moegrad-checkpoint' and vlen_utf8('format')
    assert f.attrs['format_version'] == 3 and f.attrs['format_version'].dtype == np.int64
    assert f.attrs['complete'] == 1 and f.attrs['complete'].dtype == np.int64
    assert f.attrs['config_json'] == '{"name":"caf\u00e9 moe","dim":4}' and vlen_utf8('config_json')
    assert f.attrs['note'] == 'na\u00efve' and vlen_utf8('note')
    assert f.attrs['moegrad_version'] == '0.1'
    assert sorted(f.attrs.keys()) == ['complete', 'config_json', 'content_crc64', 'format', 'format_version',
                                      'moegrad_version', 'note']
    assert len(f.attrs['content_crc64']) == 16
    assert sorted(f.keys()) == ['model', 'optimizer', 'rng', 'train'], list(f.keys())
    shapes = {'net.0.weight': (8, 4), 'net.0.bias': (8,), 'net.1.weight': (2, 8), 'net.1.bias': (2,)}
    assert {k: v.shape for k, v in f['model'].items()} == shapes, dict(f['model'].items())
    for k in shapes:
        d = f['model'][k]
        assert d.dtype == np.float32 and d.fletcher32 and d.chunks is not None, k
        assert d.attrs['crc64'] == crc64(d[()].astype('<f4').tobytes()), k
    assert sorted(f['optimizer'].keys()) == sorted(shapes), list(f['optimizer'].keys())
    for k, shape in shapes.items():
        g = f['optimizer'][k]
        assert sorted(g.keys()) == ['exp_avg', 'exp_avg_sq', 'step'], (k, list(g.keys()))
        assert g['exp_avg'].shape == shape and g['exp_avg'].fletcher32
        assert f['optimizer/' + k + '/exp_avg_sq'].shape == shape
        s = g['step']
        assert s.shape == () and s[()] == 42 and s.attrs['crc64'] == crc64(s[()].tobytes())
    t = f['train']
    assert t['step'][()] == 1234 and t['step'].dtype == np.int64 and t['step'].shape == ()
    assert t['epoch'][()] == 3
    assert {k: v[()] for k, v in t['cursor'].items()} == {'train': 1234, 'eval': 7}
    assert f['rng/model'].dtype == np.int64 and f['rng/model'][()].tolist() == [5, 96]
    data = f['rng/data'][()].astype(np.uint64).tolist()
    assert data == [0xFEDCBA9876543210, 2**63 + 5], data
    assert f['rng/model'].fletcher32
print('layout ok')
)PY";
  CHECK(std::system(fmt::format("/usr/bin/python3 '{}' '{}'", script, path).c_str()) == 0);
}

TEST_CASE("checkpoint: loading fails with one line naming the file and the problem") {
  TempDir dir;
  SUBCASE("missing file") { check_load_fails(dir.file("none.h5"), "no such file"); }
  SUBCASE("not an HDF5 file") {
    std::ofstream(dir.file("text.h5")) << "{\"not\": \"hdf5\"}\n";
    check_load_fails(dir.file("text.h5"), "not an HDF5 file");
    std::ofstream(dir.file("empty.h5")).flush();
    check_load_fails(dir.file("empty.h5"), "not an HDF5 file");
  }
  SUBCASE("truncated") {
    const std::string path = dir.file("cut.h5");
    train::save_checkpoint(path, make_checkpoint(*make_model(1)));
    fs::resize_file(path, fs::file_size(path) / 2);
    check_load_fails(path, "(truncated)");
    std::ofstream(path, std::ios::app) << "appended";
    check_load_fails(path, "bytes after its header, which says");
  }
  SUBCASE("checksum mismatch in a tensor") {
    const std::string path = dir.file("bad.h5");
    train::save_checkpoint(path, make_checkpoint(*make_model(1)));
    std::uint64_t at = 0;
    {
      const h5::File f = h5::File::open(path);
      at = f.data_ranges("/model/net.1.weight").at(0).offset;
    }
    flip_byte(path, at + 9);
    check_load_fails(path, "checksum mismatch over the file (crc64 ");
    CHECK_THROWS_WITH_AS(train::check_checkpoint(path), Contains("checksum mismatch over the file"), Error);
    h5::seal(path);  // as if the damage happened before the file was sealed
    CHECK_NOTHROW(train::check_checkpoint(path));  // the header is fine; the data is not
    check_load_fails(path, "checksum mismatch in dataset '/model/net.1.weight'");
  }
  SUBCASE("checksum mismatch in a scalar") {
    const std::string path = dir.file("bad.h5");
    train::save_checkpoint(path, make_checkpoint(*make_model(1)));
    std::uint64_t at = 0;
    {
      const h5::File f = h5::File::open(path);
      at = f.data_ranges("/train/step").at(0).offset;
    }
    flip_byte(path, at + 1);
    check_load_fails(path, "checksum mismatch over the file");
    h5::seal(path);
    check_load_fails(path, "checksum mismatch in dataset '/train/step'");
  }
  SUBCASE("no complete attribute") {
    const auto path = damaged(dir, "cut.h5", [](h5::File& f) { f.remove_attribute("complete"); });
    check_load_fails(path, "incomplete checkpoint (no 'complete' attribute): the write was interrupted");
    CHECK_THROWS_WITH_AS(train::check_checkpoint(path), Contains("incomplete checkpoint"), Error);
  }
  SUBCASE("unknown format_version") {
    const auto path = damaged(dir, "v4.h5", [](h5::File& f) { f.set_attribute("format_version", 4); });
    check_load_fails(path, "unknown format_version 4 (this build reads versions 2 to 3)");
    const auto v1 = damaged(dir, "v1attr.h5", [](h5::File& f) { f.set_attribute("format_version", 1); });
    check_load_fails(v1, "unknown format_version 1 (this build reads versions 2 to 3)");
  }
  SUBCASE("format_version 1 (no file checksum)") {
    const std::string path = dir.file("v1.h5");
    {
      h5::File f = h5::File::create(path);
      train::write_checkpoint(f, make_checkpoint(*make_model(1)));
    }
    check_load_fails(path, "no file checksum in its first 512 bytes");
  }
  SUBCASE("another format") {
    const auto path = damaged(dir, "other.h5", [](h5::File& f) { f.set_attribute("format", "pytorch"); });
    check_load_fails(path, "not a moegrad checkpoint (format 'pytorch', expected 'moegrad-checkpoint')");
    const std::string plain = dir.file("plain.h5");
    h5::write_atomically(plain, [](h5::File& f) { f.write("x", core::zeros({2})); });
    check_load_fails(plain, "not a moegrad checkpoint (no 'format' attribute)");
  }
  SUBCASE("unexpected dataset, missing group, wrong /train and /rng entries") {
    check_load_fails(damaged(dir, "a.h5", [](h5::File& f) { f.write("/extra/x", core::zeros({1})); }),
                     "unexpected dataset '/extra/x'");
    check_load_fails(damaged(dir, "b.h5", [](h5::File& f) { f.write("/train/lr", core::zeros({1})); }),
                     "unexpected dataset '/train/lr'");
    check_load_fails(damaged(dir, "c.h5", [](h5::File& f) { f.write("/train/step", core::zeros({2}), {.checksum = true}); }),
                     "dataset '/train/step' is f32(2,), expected a 0-d int64");
    check_load_fails(damaged(dir, "d.h5", [](h5::File& f) { f.write("/rng/model", core::zeros({3}, {DType::i64}), {.checksum = true}); }),
                     "dataset '/rng/model' is i64(3,), expected int64 (2,) = (seed, offset)");
    check_load_fails(damaged(dir, "e.h5", [](h5::File& f) { f.set_attribute("note", 5); }),
                     "attribute 'note' is an integer, not a string");
    check_load_fails(damaged(dir, "g.h5", [](h5::File& f) { f.write("/train/epoch", core::scalar_tensor(4, {DType::i64})); }),
                     "dataset '/train/epoch' has no 'crc64' attribute");
    // Values that are well-formed but not the ones saved: the content digest.
    check_load_fails(damaged(dir, "h.h5", [](h5::File& f) { f.set_attribute("note", "other"); }),
                     "checksum mismatch over the loaded content (content_crc64 ");
    check_load_fails(damaged(dir, "i.h5", [](h5::File& f) { f.set_attribute("config_json", "{}"); }),
                     "checksum mismatch over the loaded content");
    const std::string nogroup = dir.file("f.h5");
    h5::write_atomically(nogroup, [](h5::File& f) {
      f.set_attribute("format", "moegrad-checkpoint");
      f.set_attribute("format_version", 3);
      f.set_attribute("config_json", "{}");
      f.create_group("/model");
      f.set_attribute("complete", 1);
    });
    check_load_fails(nogroup, "missing group '/optimizer'");
  }
}

TEST_CASE("checkpoint: saving checks names first and leaves no file behind") {
  TempDir dir;
  const std::string path = dir.file("ck.h5");
  auto fails = [&](train::Checkpoint ck, const std::string& problem) {
    CHECK_THROWS_WITH_AS(train::save_checkpoint(path, ck), Contains(problem.c_str()), Error);
    CHECK(dir.entries().empty());
  };
  train::Checkpoint ck;
  ck.attributes["complete"] = "yes";
  fails(ck, "cannot save attribute 'complete': the name is reserved");
  ck = {};
  ck.cursor["a/b"] = 1;
  fails(ck, "cannot save cursor name 'a/b'");
  ck = {};
  ck.rng[""] = {};
  fails(ck, "cannot save rng name ''");
  ck = {};
  ck.optimizer.insert("w//m", core::zeros({1}));
  fails(ck, "cannot save optimizer key 'w//m'");
  ck = {};
  ck.model.insert("../w", core::zeros({1}));
  fails(ck, "cannot save model key '../w'");
  ck = {};
  ck.step = -1;
  fails(ck, "cannot save a negative step (-1)");
  // A failure while writing (a dataset where a group must go) leaves no temporary either.
  ck = {};
  ck.optimizer.insert("w", core::zeros({1}));
  ck.optimizer.insert("w/m", core::zeros({1}));
  CHECK_THROWS_AS(train::save_checkpoint(path, ck), Error);
  CHECK(dir.entries().empty());
  // An empty checkpoint is fine.
  train::save_checkpoint(path, train::Checkpoint{});
  const train::Checkpoint back = train::load_checkpoint(path);
  CHECK(back.model.empty());
  CHECK(back.optimizer.empty());
  CHECK(back.cursor.empty());
  CHECK(back.rng.empty());
  CHECK(back.step == 0);
}

TEST_CASE("checkpoint: a folder names files by step, rotates, and finds the latest complete one") {
  TempDir dir;
  const std::string folder = (dir.path / "run" / "ckpt").string();
  train::CheckpointDir ckpts(folder, 2);
  CHECK(fs::is_directory(folder));
  CHECK(ckpts.path_for(100) == folder + "/step-000000100.h5");
  CHECK(ckpts.path_for(1234567890) == folder + "/step-1234567890.h5");
  CHECK_THROWS_WITH_AS(ckpts.path_for(-1), Contains("must be >= 0"), Error);
  CHECK(train::CheckpointDir::step_of("a/step-000000100.h5") == 100);
  CHECK(train::CheckpointDir::step_of("step-1234567890.h5") == 1234567890);
  CHECK_FALSE(train::CheckpointDir::step_of("step-.h5"));
  CHECK_FALSE(train::CheckpointDir::step_of("step-12a.h5"));
  CHECK_FALSE(train::CheckpointDir::step_of(".step-000000100.h5.tmp-1-2"));
  CHECK_FALSE(ckpts.latest());

  auto model = make_model(1);
  train::Checkpoint ck = make_checkpoint(*model);
  for (std::int64_t step : {100, 200, 300}) {
    ck.step = step;
    CHECK(ckpts.save(ck) == ckpts.path_for(step));
  }
  auto names = [&] {
    std::vector<std::string> out;
    for (const auto& p : ckpts.list()) out.push_back(fs::path(p).filename().string());
    return out;
  };
  CHECK(names() == std::vector<std::string>{"step-000000200.h5", "step-000000300.h5"});
  CHECK(ckpts.latest() == ckpts.path_for(300));

  // A newest file that is incomplete, and one that is not HDF5, are skipped by latest() and
  // left alone by rotation.
  fs::copy_file(ckpts.path_for(300), ckpts.path_for(400));
  {
    h5::File f = h5::File::open(ckpts.path_for(400), h5::File::Mode::read_write);
    f.remove_attribute("complete");
  }
  std::ofstream(ckpts.path_for(500)) << "garbage";
  CHECK(ckpts.latest() == ckpts.path_for(300));
  ck.step = 50;  // an older step (a run resumed from an older checkpoint): kept as just written
  ckpts.save(ck);
  CHECK(names() == std::vector<std::string>{"step-000000050.h5", "step-000000300.h5", "step-000000400.h5",
                                            "step-000000500.h5"});
  ck.step = 600;
  ckpts.save(ck);
  CHECK(names() == std::vector<std::string>{"step-000000300.h5", "step-000000400.h5", "step-000000500.h5",
                                            "step-000000600.h5"});
  CHECK(ckpts.latest() == ckpts.path_for(600));
  CHECK(train::load_checkpoint(*ckpts.latest()).step == 600);

  // keep_last = 0 keeps everything.
  train::CheckpointDir all((dir.path / "all").string());
  for (std::int64_t step : {1, 2, 3, 4}) {
    ck.step = step;
    all.save(ck);
  }
  CHECK(all.list().size() == 4);
  CHECK_THROWS_WITH_AS(train::CheckpointDir(folder, -1), Contains("keep_last must be >= 0"), Error);
}

TEST_CASE("checkpoint: stale temporary files are removed when the folder is opened") {
  TempDir dir;
  const std::string folder = dir.file("ckpt");
  fs::create_directories(folder);
  auto touch = [&](const std::string& name) { std::ofstream(fs::path(folder) / name) << "partial"; };
  const std::string own = fmt::format(".step-000000100.h5.tmp-{}-0", ::getpid());  // a previous run's pid
  const std::string dead = ".step-000000200.h5.tmp-999999999-3";                   // beyond any pid_max
  const std::string live = fmt::format(".step-000000300.h5.tmp-{}-1", ::getppid()); // a running process
  touch(own);
  touch(dead);
  touch(live);
  touch(".notes.txt.tmp-1-2");  // not a checkpoint's temporary
  touch("notes.txt");
  train::CheckpointDir ckpts(folder, 3);
  std::vector<std::string> left;
  for (const auto& e : fs::directory_iterator(folder)) left.push_back(e.path().filename().string());
  std::sort(left.begin(), left.end());
  CHECK(left == std::vector<std::string>{".notes.txt.tmp-1-2", live, "notes.txt"});
  CHECK(ckpts.remove_stale_temporaries().empty());
  CHECK(ckpts.list().empty());
}
