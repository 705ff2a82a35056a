// Training checkpoints: one HDF5 file each, written atomically, read back strictly.
//
// Layout (format "moegrad-checkpoint", format_version 3):
//   /model/<state_dict key>            the model's tensors under PyTorch's names and shapes
//                                      ("/model/experts.experts.0.net.0.weight")
//   /optimizer/<state_dict key>/<slot> optimizer state under the same keys and shapes as /model
//                                      (optim/module_state.h): exp_avg, exp_avg_sq,
//                                      max_exp_avg_sq or momentum_buffer, and `step` as a 0-d
//                                      f32 like torch.optim.Adam's (f64 past 2^24)
//                                      ("/optimizer/experts.experts.0.net.0.weight/exp_avg");
//   /optimizer/step_count              0-d int64, optimizer.step() calls (a key without '/' is a
//                                      dataset directly in /optimizer)
//   /train/step, /train/epoch          0-d int64
//   /train/cursor/<name>               0-d int64, one per data cursor ("train", "eval")
//   /rng/<name>                        int64 [2]: a Philox generator's (seed, offset); values of
//                                      2^63 and more are stored as their two's-complement bit
//                                      pattern (cast back to uint64)
//   root attributes                    format, config_json, content_crc64 (content_digest, 16 hex
//                                      digits) and any extra string attributes as
//                                      variable-length UTF-8 strings; format_version and
//                                      complete (= 1, written after everything else) as int64
// Integrity, checked at every load, outermost first (zero silent wrong loads):
//   - the file is sealed (h5::write_atomically): a CRC-64 of all its bytes in a 512-byte user
//     block, verified before HDF5 parses anything: any changed byte, truncation or appended
//     data is an error, and HDF5 never sees a damaged file;
//   - each dataset has exactly the stored type the writer writes (IEEE f32/f64 LE, int64 LE,
//     uint8), all its data allocated in the file, and a `crc64` attribute over its tensor's
//     bytes (arrays with data also the Fletcher32 filter on their chunks);
//   - content_crc64 over everything loaded (names, dtypes, shapes, values, step, cursors,
//     generators, config and attributes) matches.
// Older files: format_version 2 (the same layout, but /optimizer keyed by the internal parameter
// names and shapes, "/optimizer/experts.w_in/exp_avg" [E, 2h, d] and an int64 step) is read:
// Checkpoint::format_version says so, and the trainer restores such an optimizer state by
// parameter name (train/parallel.h, load_full_state), so runs saved before version 3 resume
// exactly. format_version 1 (unsealed) is refused with one line.
//
// Errors are one line naming the file and the problem, and leave every file as it was:
//   [checkpoint] 'ckpt/step-000000100.h5': incomplete checkpoint (no 'complete' attribute): the write was interrupted
// Whether the tensors fit the model is checked by the caller, through Module::load_state_dict
// (strict: missing, unexpected and mismatched keys) and the optimizer's load_state_dict.
#pragma once
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "core/rng.h"
#include "layers/state_dict.h"
#include "train/hdf5.h"

namespace moegrad::train {

inline constexpr const char* kCheckpointFormat = "moegrad-checkpoint";
inline constexpr std::int64_t kCheckpointFormatVersion = 3;      // written
inline constexpr std::int64_t kOldestReadableFormatVersion = 2;  // read

// A Philox generator's state.
struct RngState {
  std::uint64_t seed = 0;
  std::uint64_t offset = 0;

  static RngState of(const core::Generator& g) { return {g.seed(), g.offset()}; }
  void restore(core::Generator& g) const { g.set_state(seed, offset); }
  bool operator==(const RngState&) const = default;
};

struct Checkpoint {
  nn::StateDict model;      // Module::state_dict()
  nn::StateDict optimizer;  // optim::module_state_dict: "<state_dict key>/<slot>" -> tensor
  // The file's version (load_checkpoint sets it). 2: `optimizer` is keyed by parameter name
  // (Optimizer::state_dict's form). save_checkpoint writes only the current version.
  std::int64_t step = 0;    // >= 0
  std::int64_t epoch = 0;   // >= 0
  std::map<std::string, std::int64_t> cursor;  // data cursors by name (DataSource::cursor())
  std::map<std::string, RngState> rng;         // named generators
  std::string config_json;                     // the run's configuration, as given
  std::map<std::string, std::string> attributes;  // further root string attributes
  std::int64_t format_version = kCheckpointFormatVersion;
};

// Writes `path` atomically (h5::write_atomically: temporary file in the same folder, fsync,
// rename). Names are checked first: model and optimizer keys with empty, "." or ".." path
// components, cursor and rng names that are empty or hold '/', extra attributes named like
// the reserved ones, negative step or epoch, and a format_version other than the current one
// are errors.
void save_checkpoint(const std::string& path, const Checkpoint& ck);
// The body of save_checkpoint: everything into an open, writable file, `complete` last.
void write_checkpoint(h5::File& f, const Checkpoint& ck);

// CRC-64/XZ over a canonical serialization of everything a checkpoint holds (model and
// optimizer tensors by sorted key with dtype, shape and little-endian bytes; b8 counted as
// the u8 it is stored as; step, epoch, cursors, generators, config_json, attributes). Stored
// as content_crc64; `moegrad inspect` prints it, so two files that load identically print
// the same digest.
std::uint64_t content_digest(const Checkpoint& ck);

// Reads everything back, verifying every checksum. Throws moegrad::Error
// "[checkpoint] '<path>': <problem>" for a missing file, a file that is not HDF5, a file
// without the seal or not matching it ("checksum mismatch over the file ..."), a truncated or
// damaged file, a missing `complete` attribute, another format, an unknown format_version,
// a missing group, an unexpected dataset or attribute, a /train or /rng entry of the wrong
// dtype or shape, a dataset of another stored type or not all in the file, and a checksum
// mismatch ("checksum mismatch in dataset '/model/w' ...", or over the loaded content).
// Tensors come back contiguous on the CPU; StateDicts in sorted key order.
Checkpoint load_checkpoint(const std::string& path);

// What can be checked without reading the tensors: the file is HDF5, matches its seal (the
// whole file is read once for that), opens, and has the format, a known format_version and
// `complete`. Throws load_checkpoint's errors.
void check_checkpoint(const std::string& path);

// A folder of checkpoints "step-<step, 9 digits>.h5" with keep-last-N rotation.
class CheckpointDir {
 public:
  // Creates `dir` (and its parents), checks that a file can be written in it (a probe file
  // ".write-probe-<pid>" is created, written and removed; else one line naming the folder and
  // the system's reason), and removes stale temporary files (see remove_stale_temporaries).
  // keep_last = 0 keeps every checkpoint.
  explicit CheckpointDir(std::string dir, int keep_last = 0);

  const std::string& dir() const { return dir_; }
  int keep_last() const { return keep_last_; }

  // dir/step-000000100.h5 (more digits past 999,999,999); step >= 0.
  std::string path_for(std::int64_t step) const;
  // The step of a checkpoint file name ("step-000000100.h5" -> 100), nullopt for other names.
  static std::optional<std::int64_t> step_of(const std::string& path);

  // Saves ck to path_for(ck.step) (replacing a checkpoint of the same step) and returns the
  // path. Then rotation: of the complete checkpoints (check_checkpoint passes), the newest
  // keep_last by step are kept, and always the one just written; older complete ones are
  // removed. Files that are not complete checkpoints are never removed. A removal that fails
  // is reported on stderr and does not fail the save. A save that fails (full disk, I/O
  // error) throws one line and leaves the folder as it was: no temporary, no rotation.
  std::string save(const Checkpoint& ck);

  // The newest checkpoint that passes check_checkpoint; each newer file that does not is
  // skipped with a line on stderr naming it and the problem. nullopt when there is none.
  std::optional<std::string> latest() const;

  // Every checkpoint file name in the folder (complete or not), by step, oldest first.
  std::vector<std::string> list() const;

  // Removes the temporary files that an interrupted save leaves (h5::write_atomically's
  // ".step-<n>.h5.tmp-<pid>-<k>"), unless process <pid> is another live process, which may
  // still be writing it (it is then left, with a line on stderr). Returns the removed paths.
  // Call it before this process starts saving: its own temporaries count as stale.
  std::vector<std::string> remove_stale_temporaries() const;

 private:
  void check_writable() const;

  std::string dir_;
  int keep_last_;
};

}  // namespace moegrad::train
