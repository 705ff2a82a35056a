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
  // A checksum that every read verifies. Arrays with data get HDF5's Fletcher32 filter, which
  // needs chunked storage: chunks of at most 1 MiB, whole trailing dims first (h5py's
  // `ds.fletcher32` is True). HDF5 cannot chunk a scalar, so a 0-d tensor stays a scalar
  // dataset and carries a `crc32` attribute instead (uint32: CRC-32 of its stored
  // little-endian bytes, as Python's zlib.crc32 computes it). Empty tensors hold no data and
  // get no checksum. A mismatch throws ChecksumError.
  bool checksum = false;
};

// Thrown by File::read when a dataset's data does not match its Fletcher32 or crc32 checksum:
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

  File(File&&) noexcept;
  File& operator=(File&&) noexcept;
  File(const File&) = delete;
  File& operator=(const File&) = delete;
  ~File();  // closes; a failure here is only logged (use close() to see it)

  const std::string& path() const { return path_; }
  bool is_open() const;

  // Whether a group or dataset exists at this path ("/model/w1" or "model/w1"; "/" exists).
  bool exists(const std::string& object_path) const;

  // A fresh contiguous CPU tensor: float32 -> f32, float64 -> f64 (other float sizes convert
  // to the nearer of the two), uint8 and enum bool (h5py's bool) -> u8, other integers -> i64.
  // A scalar dataspace gives a 0-d tensor.
  core::Tensor read(const std::string& dataset) const;
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
nn::StateDict read_state_dict(const File& f, const std::string& group = "/model");
// One dataset per key, under group.
void write_state_dict(File& f, const std::string& group, const nn::StateDict& sd, const WriteOptions& options = {});

// Writes `path` so that it is either the old file or the complete new one, never a partial
// file: fill() writes into a new temporary file in the same directory (".<name>.tmp-<pid>-<n>",
// created exclusively with the usual 0666 & ~umask permissions), which is closed,
// fsynced and renamed over `path`, and then the directory is fsynced. If anything throws,
// the temporary file is removed, `path` is untouched, and the exception propagates.
void write_atomically(const std::string& path, const std::function<void(File&)>& fill);

}  // namespace moegrad::h5
