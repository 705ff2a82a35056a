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
#include <vector>

#include "core/tensor.h"
#include "layers/state_dict.h"

namespace moegrad::h5 {

class File {
 public:
  static File open(const std::string& path);    // read-only; the file must exist
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
  void write(const std::string& dataset, const core::Tensor& t);
  // Creates the group and any missing parents; nothing happens when it exists.
  void create_group(const std::string& group);

  // Dataset names below group, relative to it and sorted; recursive descends into subgroups
  // and gives "a/b" paths (groups themselves are not listed).
  std::vector<std::string> list(const std::string& group, bool recursive = false) const;

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
void write_state_dict(File& f, const std::string& group, const nn::StateDict& sd);

// Writes `path` so that it is either the old file or the complete new one, never a partial
// file: fill() writes into a new temporary file in the same directory (".<name>.tmp-<pid>-<n>",
// created exclusively with the usual 0666 & ~umask permissions), which is closed,
// fsynced and renamed over `path`, and then the directory is fsynced. If anything throws,
// the temporary file is removed, `path` is untouched, and the exception propagates.
void write_atomically(const std::string& path, const std::function<void(File&)>& fill);

}  // namespace moegrad::h5
