// HDF5 files: tensors as datasets, string and number attributes on the root, state_dicts as
// a group of datasets, and atomic writes. Through HDF5's C API; no HDF5 header is included
// here. HDF5's own error printing is off: every failure throws moegrad::Error
//   [hdf5] cannot open 'x.h5': unable to open file: name = 'x.h5', errno = 2, ...
//   [hdf5] 'w.h5' has no dataset '/model/gate.weight'
// naming the file, the object and HDF5's innermost error description.
#pragma once
#include <concepts>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "core/tensor.h"
#include "layers/state_dict.h"

namespace moegrad::h5 {

// How File::write stores a dataset.
struct WriteOptions {
  // A checksum that every read verifies: a `crc64` attribute on the dataset (uint64: CRC-64/XZ,
  // see train/crc64.h, of the tensor's little-endian bytes; 0 for an empty tensor). Arrays with
  // data also get HDF5's Fletcher32 filter, which needs chunked storage: chunks of at most
  // 1 MiB, whole trailing dims first (h5py's `ds.fletcher32` is True). A mismatch throws
  // ChecksumError.
  bool checksum = false;
};

// How File::read accepts a dataset.
struct ReadOptions {
  // For checkpoints: the stored type must be exactly one File::write stores (H5T_IEEE_F32LE,
  // H5T_IEEE_F64LE, H5T_STD_I64LE, H5T_STD_U8LE; H5Tequal compares every field, the float
  // layout included) and the dataset must carry a `crc64` attribute.
  bool strict = false;
};

// Thrown by File::read when a dataset's data does not match its Fletcher32 or crc64 checksum,
// and by verify_seal when a file does not match its file checksum:
//   [hdf5] 'f.h5': checksum mismatch in dataset '/model/w' (Fletcher32): the data is corrupted
class ChecksumError : public Error {
 public:
  ChecksumError(const std::string& message, std::string dataset) : Error(message), dataset_(std::move(dataset)) {}
  const std::string& dataset() const { return dataset_; }  // as passed to read()

 private:
  std::string dataset_;
};

// Where some of a dataset's data lies in the file (File::data_ranges).
struct ByteRange {
  std::uint64_t offset = 0;
  std::uint64_t size = 0;
};

// Whether `path` is a readable file with HDF5's signature (at byte 0, or 512, 1024, ... after a
// user block). A truncated HDF5 file still has it; File::open then says what is wrong.
bool is_hdf5(const std::string& path);

class File {
 public:
  enum class Mode { read, read_write };
  static File open(const std::string& path, Mode mode = Mode::read);  // the file must exist
  static File create(const std::string& path);  // read-write; truncates an existing file
  // A file that lives in memory only (HDF5's core driver; `name` is for messages), with a
  // user block of `user_block` bytes (0, or a power of two >= 512) left zero at its start.
  // image() gives its bytes; nothing is written to disk. write_atomically builds files so.
  static File create_in_memory(const std::string& name, std::uint64_t user_block = 0);

  File(File&&) noexcept;
  File& operator=(File&&) noexcept;
  File(const File&) = delete;
  File& operator=(const File&) = delete;
  ~File();  // closes; a failure here is only logged (use close() to see it)

  const std::string& path() const { return path_; }
  bool is_open() const;

  // Whether a group or dataset exists at this path ("/model/w1" or "model/w1"; "/" exists).
  bool exists(const std::string& object_path) const;

  // A fresh contiguous CPU tensor: float32 and float16 -> f32, float64 -> f64, uint8 and enum
  // bool (h5py's bool) -> u8, other integers -> i64; a scalar dataspace gives a 0-d tensor.
  // Before any allocation the dataset is checked: an IEEE float layout or a plain integer (in
  // either byte order; a damaged type, e.g. a zeroed exponent bias, is refused), a size that
  // fits (numel * element size < 2^63), and all its data in the file (contiguous storage of
  // the declared size, or every chunk): a dataset declared (2^28, 2^28, 64) but never written
  // fails with one line instead of reading fill values or overrunning memory. A `crc64`
  // attribute is verified when present (options.strict requires it).
  core::Tensor read(const std::string& dataset, const ReadOptions& options = {}) const;
  // Creates intermediate groups and replaces an existing dataset of that name. Any tensor
  // (views are made contiguous, other devices copied to the host); dtype kept: f32, f64,
  // i64 (H5T_STD_I64LE), u8 and b8 (both H5T_STD_U8LE). 0-d tensors become scalar datasets.
  // Without a checksum the data is stored contiguously.
  void write(const std::string& dataset, const core::Tensor& t, const WriteOptions& options = {});
  // Creates the group and any missing parents; nothing happens when it exists.
  void create_group(const std::string& group);

  // Dataset names below group, relative to it and sorted; recursive descends into subgroups
  // and gives "a/b" paths (groups themselves are not listed).
  std::vector<std::string> list(const std::string& group, bool recursive = false) const;

  // The file byte ranges holding a dataset's data: one per allocated chunk (in HDF5's chunk
  // order), or the one contiguous block; empty when nothing is allocated. For tests that
  // damage files on purpose and for tools that report storage.
  std::vector<ByteRange> data_ranges(const std::string& dataset) const;

  // Names of the root attributes, sorted.
  std::vector<std::string> attribute_names() const;
  // Root attributes. nullopt when absent; an attribute of another type throws.
  // Strings may be variable-length (h5py's default) or fixed-length.
  std::optional<std::string> attribute_string(const std::string& name) const;
  // Any integer or float attribute, as a double (integers are exact up to 2^53).
  std::optional<double> attribute_number(const std::string& name) const;
  // Written as h5py writes them (variable-length UTF-8 string, H5T_STD_I64LE, H5T_IEEE_F64LE);
  // an existing attribute of that name is replaced.
  void set_attribute(const std::string& name, const std::string& value);
  void set_attribute(const std::string& name, const char* value) { set_attribute(name, std::string(value)); }
  void set_attribute(const std::string& name, std::int64_t value);
  void set_attribute(const std::string& name, double value);
  template <std::integral T>
  void set_attribute(const std::string& name, T value) {
    set_attribute(name, static_cast<std::int64_t>(value));
  }

  // Removes a root attribute; false when there was none.
  bool remove_attribute(const std::string& name);

  // The complete file as bytes (user block included), after a flush. For create_in_memory files.
  std::vector<unsigned char> image();

  void flush();  // writes HDF5's buffers to the OS (not an fsync)
  void close();  // closes now and reports failures; later calls other than close() throw

 private:
  struct Impl;
  File(std::string path, std::unique_ptr<Impl> impl);
  const Impl& impl(const char* what) const;  // throws when closed
  void close_and_log() noexcept;

  std::string path_;
  std::unique_ptr<Impl> impl_;
};

// Every dataset below group (recursively), keyed by its path relative to group, in sorted
// order. PyTorch's dotted keys are plain dataset names ("/model/net.0.weight").
nn::StateDict read_state_dict(const File& f, const std::string& group = "/model", const ReadOptions& options = {});
// One dataset per key, under group.
void write_state_dict(File& f, const std::string& group, const nn::StateDict& sd, const WriteOptions& options = {});

// ---- sealed files (train/hdf5_atomic.cpp) ---------------------------------------------------
// A sealed file starts with a 512-byte HDF5 user block holding one line
//   moegrad-file-digest crc64 <16 hex digits> <n>\n   (zero padded)
// where n is the number of bytes after the user block and the digest their CRC-64/XZ. Any
// changed, zeroed, missing or extra byte is found before HDF5 parses the file. h5py and
// h5dump read sealed files as any other (they skip the user block).
inline constexpr std::uint64_t kSealBytes = 512;

// Writes the header into image[0, 512) (the image must have a 512-byte user block).
void seal_image(std::vector<unsigned char>& image);
// Re-seals a file on disk: for tests and tools that change a sealed file on purpose.
void seal(const std::string& path);
enum class Seal { verified, absent };
// Checks a file against its header. `absent` when the file has no header (no user block, or
// one of zeros); throws ChecksumError
//   [hdf5] 'f.h5': checksum mismatch over the file (crc64 ..., stored ...): the file is corrupted
// or Error for a damaged header (anything else in the user block) or a size other than the
// header's (truncated or appended to).
Seal verify_seal(const std::string& path);

// Writes `path` so that it is either the old file or the complete new one, never a partial
// file: fill() builds the file in memory (File::create_in_memory with a 512-byte user block),
// which is then sealed and written with plain write(2)s into a new temporary file in the same
// directory (".<name>.tmp-<pid>-<n>", created exclusively with the usual 0666 & ~umask
// permissions), fsynced, closed and renamed over `path`; then the directory is fsynced.
// HDF5 itself never writes to disk, so a full disk or an I/O error is one line from here
//   [hdf5] cannot write 'ckpt/step-000000006.h5': No space left on device
// and leaves HDF5 in a clean state. If anything throws, the temporary file is removed, `path`
// is untouched, and the exception propagates. The file is held in memory twice while saving.
// Fault injection for tests: with MOEGRAD_FAULT_WRITE_FAIL_AFTER_BYTES=N in the environment,
// the process's write(2)s here fail with ENOSPC once N bytes in all have been written.
void write_atomically(const std::string& path, const std::function<void(File&)>& fill);

}  // namespace moegrad::h5
