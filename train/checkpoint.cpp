// Checkpoint files: the layout of checkpoint.h on top of train/hdf5, and a folder with rotation.
#include "train/checkpoint.h"

#include <csignal>
#include <cstdlib>

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <utility>

#include <fmt/format.h>

#include "core/ops/creation.h"
#include "train/crc64.h"

namespace moegrad::train {

namespace fs = std::filesystem;
using core::DType;
using core::Tensor;

namespace {

constexpr const char* kFormat = "format";
constexpr const char* kFormatVersion = "format_version";
constexpr const char* kConfigJson = "config_json";
constexpr const char* kComplete = "complete";
constexpr const char* kContentCrc = "content_crc64";
const h5::ReadOptions kStrict{.strict = true};

bool reserved_attribute(const std::string& name) {
  return name == kFormat || name == kFormatVersion || name == kConfigJson || name == kComplete || name == kContentCrc;
}

template <class... Args>
[[noreturn]] void fail_file(const std::string& path, fmt::format_string<Args...> f, Args&&... args) {
  fail("checkpoint", "'{}': {}", path, fmt::format(f, std::forward<Args>(args)...));
}

// An hdf5 error's message without "[hdf5] " and without a leading "'<path>': " or
// "cannot open '<path>': ", which the checkpoint message already names.
std::string detail(const std::string& message, const std::string& path) {
  std::string s = message;
  auto drop = [&](const std::string& prefix) {
    if (s.rfind(prefix, 0) == 0) s.erase(0, prefix.size());
  };
  drop("[hdf5] ");
  drop(fmt::format("'{}': ", path));
  drop(fmt::format("cannot open '{}': ", path));
  return s;
}

// Key components must be usable as HDF5 names: not empty, not "." or "..".
void check_key(const std::string& path, const char* what, const std::string& key) {
  bool ok = !key.empty() && key.front() != '/' && key.back() != '/';
  std::size_t i = 0;
  while (ok && i <= key.size()) {
    const std::size_t j = std::min(key.find('/', i), key.size());
    const std::string part = key.substr(i, j - i);
    ok = !part.empty() && part != "." && part != "..";
    i = j + 1;
  }
  if (!ok) fail_file(path, "cannot save {} key '{}': path components must be non-empty and not '.' or '..'", what, key);
}

void check_name(const std::string& path, const char* what, const std::string& name) {
  if (name.empty() || name.find('/') != std::string::npos || name == "." || name == "..")
    fail_file(path, "cannot save {} name '{}': it must be non-empty, without '/', and not '.' or '..'", what, name);
}

void validate(const std::string& path, const Checkpoint& ck) {
  if (ck.format_version != kCheckpointFormatVersion)
    fail_file(path, "cannot save a checkpoint loaded from format_version {} as version {}: its optimizer state is keyed "
              "by parameter name; restore it into a trainer and save from there", ck.format_version, kCheckpointFormatVersion);
  if (ck.step < 0) fail_file(path, "cannot save a negative step ({})", ck.step);
  if (ck.epoch < 0) fail_file(path, "cannot save a negative epoch ({})", ck.epoch);
  for (const auto& [key, value] : ck.model) check_key(path, "model", key);
  for (const auto& [key, value] : ck.optimizer) check_key(path, "optimizer", key);
  for (const auto& [name, value] : ck.cursor) check_name(path, "cursor", name);
  for (const auto& [name, value] : ck.rng) check_name(path, "rng", name);
  for (const auto& [name, value] : ck.attributes) {
    if (name.empty()) fail_file(path, "cannot save an attribute with an empty name");
    if (reserved_attribute(name)) fail_file(path, "cannot save attribute '{}': the name is reserved", name);
  }
}

// Opens path and checks the root attributes; the open file and its format_version are returned
// for load_checkpoint.
std::pair<h5::File, std::int64_t> open_checked(const std::string& path) {
  std::error_code ec;
  if (!fs::exists(path, ec)) fail_file(path, "no such file");
  if (!fs::is_regular_file(path, ec)) fail_file(path, "not a regular file");
  if (!h5::is_hdf5(path)) {
    const auto size = fs::file_size(path, ec);
    if (!ec && size == 0) fail_file(path, "not an HDF5 file (the file is empty)");
    fail_file(path, "not an HDF5 file (no HDF5 signature in its {} bytes)", ec ? 0 : size);
  }
  // The whole-file checksum first, so that HDF5 never parses a damaged file.
  try {
    if (h5::verify_seal(path) == h5::Seal::absent)
      fail_file(path, "no file checksum in its first {} bytes: not a moegrad checkpoint of format_version {} (older "
                "versions are not read)", h5::kSealBytes, kCheckpointFormatVersion);
  } catch (const Error& e) {
    if (std::string(e.what()).rfind("[checkpoint]", 0) == 0) throw;
    fail_file(path, "{}", detail(e.what(), path));
  }
  std::int64_t format_version = 0;
  h5::File f = [&] {
    try {
      return h5::File::open(path);
    } catch (const Error& e) {
      fail_file(path, "unreadable HDF5 file, truncated or damaged: {}", detail(e.what(), path));
    }
  }();
  try {
    const auto format = f.attribute_string(kFormat);
    if (!format) fail_file(path, "not a moegrad checkpoint (no '{}' attribute)", kFormat);
    if (*format != kCheckpointFormat)
      fail_file(path, "not a moegrad checkpoint (format '{}', expected '{}')", *format, kCheckpointFormat);
    const auto version = f.attribute_number(kFormatVersion);
    if (!version) fail_file(path, "no '{}' attribute", kFormatVersion);
    if (*version < kOldestReadableFormatVersion || *version > kCheckpointFormatVersion || *version != std::floor(*version))
      fail_file(path, "unknown format_version {} (this build reads versions {} to {})", *version, kOldestReadableFormatVersion,
                kCheckpointFormatVersion);
    format_version = static_cast<std::int64_t>(*version);
    const auto complete = f.attribute_number(kComplete);
    if (!complete) fail_file(path, "incomplete checkpoint (no '{}' attribute): the write was interrupted", kComplete);
    if (*complete != 1) fail_file(path, "incomplete checkpoint ('{}' is {}, expected 1)", kComplete, *complete);
  } catch (const Error& e) {
    if (std::string(e.what()).rfind("[checkpoint]", 0) == 0) throw;
    fail_file(path, "{}", detail(e.what(), path));
  }
  return {std::move(f), format_version};
}

Tensor read_scalar_i64(const h5::File& f, const std::string& dataset) {
  Tensor t = f.read(dataset, kStrict);
  if (t.dtype() != DType::i64 || t.dim() != 0)
    fail_file(f.path(), "dataset '{}' is {}{}, expected a 0-d int64", dataset, core::dtype_name(t.dtype()),
              core::shape_str(t.shape()));
  return t;
}

}  // namespace

// ---- the content digest ----------------------------------------------------------------------

std::uint64_t content_digest(const Checkpoint& ck) {
  std::uint64_t crc = 0;
  auto add = [&](const void* p, std::size_t n) { crc = crc64(p, n, crc); };
  auto add_u64 = [&](std::uint64_t v) {
    unsigned char b[8];
    for (int i = 0; i < 8; ++i) b[i] = static_cast<unsigned char>(v >> (8 * i));  // little-endian
    add(b, 8);
  };
  auto add_str = [&](const std::string& s) {
    add_u64(s.size());
    add(s.data(), s.size());
  };
  auto add_dict = [&](const char* section, const nn::StateDict& sd) {
    std::vector<std::string> keys = sd.keys();
    std::sort(keys.begin(), keys.end());
    add_str(section);
    add_u64(keys.size());
    for (const auto& key : keys) {
      const Tensor t = core::contiguous(core::to_device(sd.at(key), core::Device::cpu()));
      add_str(key);
      add_str(t.dtype() == DType::b8 ? "u8" : core::dtype_name(t.dtype()));  // b8 is stored as uint8
      add_u64(t.shape().size());
      for (std::int64_t d : t.shape()) add_u64(static_cast<std::uint64_t>(d));
      add(t.raw_data(), static_cast<std::size_t>(t.numel()) * core::dtype_size(t.dtype()));
    }
  };
  add_dict("model", ck.model);
  add_dict("optimizer", ck.optimizer);
  add_u64(static_cast<std::uint64_t>(ck.step));
  add_u64(static_cast<std::uint64_t>(ck.epoch));
  add_u64(ck.cursor.size());
  for (const auto& [name, v] : ck.cursor) {
    add_str(name);
    add_u64(static_cast<std::uint64_t>(v));
  }
  add_u64(ck.rng.size());
  for (const auto& [name, r] : ck.rng) {
    add_str(name);
    add_u64(r.seed);
    add_u64(r.offset);
  }
  add_str(ck.config_json);
  add_u64(ck.attributes.size());
  for (const auto& [name, v] : ck.attributes) {
    add_str(name);
    add_str(v);
  }
  return crc;
}

// ---- writing ---------------------------------------------------------------------------------

void write_checkpoint(h5::File& f, const Checkpoint& ck) {
  validate(f.path(), ck);
  const h5::WriteOptions sum{.checksum = true};
  f.set_attribute(kFormat, kCheckpointFormat);
  f.set_attribute(kFormatVersion, kCheckpointFormatVersion);
  f.set_attribute(kConfigJson, ck.config_json);
  for (const auto& [name, value] : ck.attributes) f.set_attribute(name, value);

  h5::write_state_dict(f, "/model", ck.model, sum);
  // Fault injection for the crash test (tests/tools/check_train_cli.py): the process is killed
  // halfway through writing the checkpoint of this step, as a power cut or the OOM killer would.
  if (const char* kill_at = std::getenv("MOEGRAD_FAULT_KILL_IN_CHECKPOINT"); kill_at && std::to_string(ck.step) == kill_at) {
    f.flush();
    std::raise(SIGKILL);
  }
  h5::write_state_dict(f, "/optimizer", ck.optimizer, sum);
  f.create_group("/train");
  // 0-d int64 from the exact value (scalar_tensor would go through a double).
  auto i64 = [](std::int64_t v) { return core::from_vector<std::int64_t>({v}, core::Shape{}); };
  f.write("/train/step", i64(ck.step), sum);
  f.write("/train/epoch", i64(ck.epoch), sum);
  f.create_group("/train/cursor");
  for (const auto& [name, value] : ck.cursor) f.write("/train/cursor/" + name, i64(value), sum);
  f.create_group("/rng");
  for (const auto& [name, state] : ck.rng) {
    const Tensor t = core::from_vector<std::int64_t>(
        {static_cast<std::int64_t>(state.seed), static_cast<std::int64_t>(state.offset)}, {2});
    f.write("/rng/" + name, t, sum);
  }
  f.set_attribute(kContentCrc, fmt::format("{:016x}", content_digest(ck)));
  f.set_attribute(kComplete, std::int64_t{1});  // last: a file without it was not finished
}

void save_checkpoint(const std::string& path, const Checkpoint& ck) {
  validate(path, ck);  // before a temporary file exists
  h5::write_atomically(path, [&](h5::File& f) { write_checkpoint(f, ck); });
}

// ---- reading ---------------------------------------------------------------------------------

void check_checkpoint(const std::string& path) { open_checked(path); }

Checkpoint load_checkpoint(const std::string& path) {
  const auto [f, format_version] = open_checked(path);
  Checkpoint ck;
  ck.format_version = format_version;
  try {
    for (const char* group : {"/model", "/optimizer", "/train", "/rng"}) {
      if (!f.exists(group)) fail_file(path, "missing group '{}'", group);
    }
    // Everything in the file must belong to the layout.
    for (const auto& name : f.list("/", /*recursive=*/true)) {
      const std::string top = name.substr(0, name.find('/'));
      const bool known = ((top == "model" || top == "optimizer") && top.size() < name.size()) ||
                         name == "train/step" || name == "train/epoch" ||
                         (name.rfind("train/cursor/", 0) == 0 && name.find('/', 13) == std::string::npos) ||
                         (name.rfind("rng/", 0) == 0 && name.find('/', 4) == std::string::npos);
      if (!known) fail_file(path, "unexpected dataset '/{}' (not part of format_version {})", name, format_version);
    }
    for (const auto& name : f.attribute_names()) {
      if (reserved_attribute(name)) continue;
      ck.attributes[name] = *f.attribute_string(name);  // a non-string attribute throws
    }
    const auto config = f.attribute_string(kConfigJson);
    if (!config) fail_file(path, "no '{}' attribute", kConfigJson);
    ck.config_json = *config;

    ck.model = h5::read_state_dict(f, "/model", kStrict);
    ck.optimizer = h5::read_state_dict(f, "/optimizer", kStrict);
    for (const char* required : {"/train/step", "/train/epoch"}) {
      if (!f.exists(required)) fail_file(path, "missing dataset '{}'", required);
    }
    ck.step = read_scalar_i64(f, "/train/step").item<std::int64_t>();
    ck.epoch = read_scalar_i64(f, "/train/epoch").item<std::int64_t>();
    if (f.exists("/train/cursor")) {
      for (const auto& name : f.list("/train/cursor"))
        ck.cursor[name] = read_scalar_i64(f, "/train/cursor/" + name).item<std::int64_t>();
    }
    for (const auto& name : f.list("/rng")) {
      const std::string dataset = "/rng/" + name;
      const Tensor t = f.read(dataset, kStrict);
      if (t.dtype() != DType::i64 || t.shape() != core::Shape{2})
        fail_file(path, "dataset '{}' is {}{}, expected int64 (2,) = (seed, offset)", dataset,
                  core::dtype_name(t.dtype()), core::shape_str(t.shape()));
      const auto v = t.to_vector<std::int64_t>();
      ck.rng[name] = RngState{static_cast<std::uint64_t>(v[0]), static_cast<std::uint64_t>(v[1])};
    }
    // Last, everything read against the digest written at save.
    const auto stored = f.attribute_string(kContentCrc);
    if (!stored) fail_file(path, "no '{}' attribute", kContentCrc);
    const std::string actual = fmt::format("{:016x}", content_digest(ck));
    if (*stored != actual)
      fail_file(path, "checksum mismatch over the loaded content (content_crc64 {}, stored '{}'): the file is corrupted",
                actual, *stored);
  } catch (const Error& e) {  // h5::ChecksumError included
    if (std::string(e.what()).rfind("[checkpoint]", 0) == 0) throw;
    fail_file(path, "{}", detail(e.what(), path));
  }
  return ck;
}

// ---- the folder ------------------------------------------------------------------------------

CheckpointDir::CheckpointDir(std::string dir, int keep_last) : dir_(std::move(dir)), keep_last_(keep_last) {
  MOEGRAD_CHECK(!dir_.empty(), "checkpoint", "the checkpoint folder name is empty");
  MOEGRAD_CHECK(keep_last_ >= 0, "checkpoint", "keep_last must be >= 0 (0 keeps all), got {}", keep_last_);
  std::error_code ec;
  fs::create_directories(dir_, ec);
  if (ec || !fs::is_directory(dir_))
    fail("checkpoint", "cannot create the checkpoint folder '{}': {}", dir_, ec ? ec.message() : "not a folder");
  check_writable();
  remove_stale_temporaries();
}

void CheckpointDir::check_writable() const {
  const std::string probe = (fs::path(dir_) / fmt::format(".write-probe-{}", ::getpid())).string();
  const int fd = ::open(probe.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  int err = fd < 0 ? errno : 0;
  if (fd >= 0) {
    if (::write(fd, "x", 1) != 1) err = errno ? errno : EIO;
    if (::close(fd) != 0 && err == 0) err = errno;
    ::unlink(probe.c_str());
  }
  if (err != 0)
    fail("checkpoint", "the checkpoint folder '{}' is not writable: cannot write a file in it: {}", dir_,
         std::strerror(err));
}

std::string CheckpointDir::path_for(std::int64_t step) const {
  MOEGRAD_CHECK(step >= 0, "checkpoint", "a checkpoint step must be >= 0, got {}", step);
  return (fs::path(dir_) / fmt::format("step-{:09d}.h5", step)).string();
}

std::optional<std::int64_t> CheckpointDir::step_of(const std::string& path) {
  const std::string name = fs::path(path).filename().string();
  const std::string prefix = "step-", suffix = ".h5";
  if (name.size() <= prefix.size() + suffix.size() || name.rfind(prefix, 0) != 0 ||
      name.compare(name.size() - suffix.size(), suffix.size(), suffix) != 0)
    return std::nullopt;
  const std::string digits = name.substr(prefix.size(), name.size() - prefix.size() - suffix.size());
  if (digits.size() > 18 || !std::all_of(digits.begin(), digits.end(), [](char c) { return c >= '0' && c <= '9'; }))
    return std::nullopt;
  return std::stoll(digits);
}

std::vector<std::string> CheckpointDir::list() const {
  std::vector<std::pair<std::int64_t, std::string>> found;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir_, ec)) {
    const auto step = step_of(e.path().string());
    if (step && e.is_regular_file(ec)) found.emplace_back(*step, e.path().string());
  }
  if (ec) fail("checkpoint", "cannot list the checkpoint folder '{}': {}", dir_, ec.message());
  std::sort(found.begin(), found.end());
  std::vector<std::string> out;
  for (auto& [step, path] : found) out.push_back(std::move(path));
  return out;
}

std::optional<std::string> CheckpointDir::latest() const {
  const auto files = list();
  for (auto it = files.rbegin(); it != files.rend(); ++it) {
    try {
      check_checkpoint(*it);
      return *it;
    } catch (const Error& e) {
      fmt::print(stderr, "moegrad: {} (skipped)\n", e.what());
    }
  }
  return std::nullopt;
}

std::string CheckpointDir::save(const Checkpoint& ck) {
  const std::string path = path_for(ck.step);
  save_checkpoint(path, ck);
  if (keep_last_ == 0) return path;
  int kept = 1;  // the one just written
  const auto files = list();
  for (auto it = files.rbegin(); it != files.rend(); ++it) {
    if (*it == path) continue;
    try {
      check_checkpoint(*it);
    } catch (const Error&) {
      continue;  // not a complete checkpoint: not ours to judge or remove
    }
    if (kept < keep_last_) {
      ++kept;
      continue;
    }
    std::error_code ec;
    if (!fs::remove(*it, ec) && ec)
      fmt::print(stderr, "moegrad: [checkpoint] cannot remove the old checkpoint '{}': {}\n", *it, ec.message());
  }
  return path;
}

std::vector<std::string> CheckpointDir::remove_stale_temporaries() const {
  std::vector<std::string> removed;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir_, ec)) {
    // ".<checkpoint name>.tmp-<pid>-<n>", as h5::write_atomically names them.
    const std::string name = e.path().filename().string();
    if (name.empty() || name[0] != '.') continue;
    const std::size_t tmp = name.rfind(".tmp-");
    if (tmp == std::string::npos || !step_of(name.substr(1, tmp - 1))) continue;
    const std::string rest = name.substr(tmp + 5);
    const std::size_t dash = rest.find('-');
    auto digits = [](const std::string& s) {
      return !s.empty() && s.size() < 10 && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
    };
    if (dash == std::string::npos || !digits(rest.substr(0, dash)) || !digits(rest.substr(dash + 1))) continue;
    const auto pid = static_cast<pid_t>(std::stol(rest.substr(0, dash)));
    if (pid != ::getpid() && pid > 0 && (::kill(pid, 0) == 0 || errno == EPERM)) {
      fmt::print(stderr, "moegrad: [checkpoint] leaving '{}': process {} is running and may be writing it\n",
                 e.path().string(), pid);
      continue;
    }
    std::error_code rm;
    if (fs::remove(e.path(), rm)) {
      removed.push_back(e.path().string());
    } else if (rm) {
      fmt::print(stderr, "moegrad: [checkpoint] cannot remove the stale temporary file '{}': {}\n", e.path().string(),
                 rm.message());
    }
  }
  if (ec) fail("checkpoint", "cannot list the checkpoint folder '{}': {}", dir_, ec.message());
  std::sort(removed.begin(), removed.end());
  return removed;
}

}  // namespace moegrad::train
