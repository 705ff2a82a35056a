// Internals shared by train/hdf5*.cpp (never included elsewhere: it includes hdf5.h): handles
// that close themselves, HDF5 errors turned into moegrad::Error, type names, the types
// File::write stores, and the checks File::read makes before reading (train/hdf5_checks.cpp).
#pragma once
#include <hdf5.h>

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>
#include <algorithm>

#include <fmt/format.h>

#include "core/error.h"
#include "core/tensor.h"
#include "train/hdf5.h"

namespace moegrad::h5::detail {

// ---- errors ----------------------------------------------------------------------------------

// HDF5 prints its error stack to stderr by default; we report through exceptions instead.
// Called at every entry point: in thread-safe builds (Debian's is one) the setting and the
// error stack are per thread.
inline void quiet() { H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr); }
// The most specific description on HDF5's error stack (walked from the innermost frame).
inline std::string innermost_error() {
  std::string out;
  H5Ewalk2(
      H5E_DEFAULT, H5E_WALK_UPWARD,
      [](unsigned, const H5E_error2_t* e, void* data) -> herr_t {
        auto* s = static_cast<std::string*>(data);
        if (s->empty() && e->desc && *e->desc) *s = e->desc;
        return 0;
      },
      &out);
  H5Eclear2(H5E_DEFAULT);
  return out.empty() ? std::string("unknown HDF5 error") : out;
}

[[noreturn]] inline void fail_h5(const std::string& what) { fail("hdf5", "{}: {}", what, innermost_error()); }

template <class T>
T check(T status, const std::string& what) {
  if (status < 0) fail_h5(what);
  return status;
}

// ---- handles ---------------------------------------------------------------------------------

class Handle {
 public:
  using Closer = herr_t (*)(hid_t);
  Handle() = default;
  Handle(hid_t id, Closer closer) : id_(id), closer_(closer) {}
  Handle(Handle&& o) noexcept : id_(std::exchange(o.id_, -1)), closer_(o.closer_) {}
  Handle& operator=(Handle&& o) noexcept {
    if (this != &o) {
      reset();
      id_ = std::exchange(o.id_, -1);
      closer_ = o.closer_;
    }
    return *this;
  }
  Handle(const Handle&) = delete;
  Handle& operator=(const Handle&) = delete;
  ~Handle() { reset(); }

  hid_t get() const { return id_; }
  operator hid_t() const { return id_; }  // NOLINT: handles pass straight to the C API
  void reset() {
    if (id_ >= 0 && closer_) closer_(id_);
    id_ = -1;
  }
  // Closes now and returns HDF5's status (the handle is released either way).
  herr_t close() {
    herr_t status = 0;
    if (id_ >= 0 && closer_) status = closer_(id_);
    id_ = -1;
    return status;
  }

 private:
  hid_t id_ = -1;
  Closer closer_ = nullptr;
};

inline Handle checked(hid_t id, Handle::Closer closer, const std::string& what) {
  if (id < 0) fail_h5(what);
  return Handle(id, closer);
}

inline Handle scalar_space() { return checked(H5Screate(H5S_SCALAR), H5Sclose, "cannot create a dataspace"); }

// Throws "[hdf5] 'f.h5' is open read-only; cannot <action>" unless the file was created here.
inline void require_writable(hid_t file, const std::string& path, const std::string& action) {
  unsigned intent = 0;
  check(H5Fget_intent(file, &intent), fmt::format("cannot query '{}'", path));
  MOEGRAD_CHECK(intent & H5F_ACC_RDWR, "hdf5", "'{}' is open read-only; cannot {}", path, action);
}

// ---- types -----------------------------------------------------------------------------------

inline const char* class_name(H5T_class_t c) {
  switch (c) {
    case H5T_INTEGER: return "integer";
    case H5T_FLOAT: return "float";
    case H5T_TIME: return "time";
    case H5T_STRING: return "string";
    case H5T_BITFIELD: return "bitfield";
    case H5T_OPAQUE: return "opaque";
    case H5T_COMPOUND: return "compound";
    case H5T_REFERENCE: return "reference";
    case H5T_ENUM: return "enum";
    case H5T_VLEN: return "variable-length";
    case H5T_ARRAY: return "array";
    default: return "unknown";
  }
}

// "an integer", "a string", ... for messages.
inline std::string a_class(H5T_class_t c) {
  const std::string name = class_name(c);
  return (std::string("aeiou").find(name[0]) != std::string::npos ? "an " : "a ") + name;
}

struct TypePair {
  hid_t file;
  hid_t memory;
};

inline TypePair types_for(core::DType d) {
  switch (d) {
    case core::DType::f32: return {H5T_IEEE_F32LE, H5T_NATIVE_FLOAT};
    case core::DType::f64: return {H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE};
    case core::DType::i64: return {H5T_STD_I64LE, H5T_NATIVE_INT64};
    case core::DType::b8:
    case core::DType::u8: return {H5T_STD_U8LE, H5T_NATIVE_UINT8};
    case core::DType::bf16: break;  // checkpoints and data files are f32
  }
  fail("hdf5", "unsupported dtype {}", core::dtype_name(d));
}

inline constexpr const char* kCrcAttribute = "crc64";

inline constexpr std::uint64_t kChunkBytes = std::uint64_t{1} << 20;

// Chunk dims for a checksummed array: whole trailing dims while they fit in kChunkBytes, part
// of the next one, 1 for the leading rest.
inline std::vector<hsize_t> chunk_dims(const std::vector<hsize_t>& dims, std::size_t element_size) {
  std::vector<hsize_t> chunk(dims.size(), 1);
  const std::uint64_t budget = std::max<std::uint64_t>(1, kChunkBytes / element_size);
  std::uint64_t elements = 1;
  for (std::size_t i = dims.size(); i-- > 0;) {
    if (elements * dims[i] <= budget) {
      chunk[i] = dims[i];
      elements *= dims[i];
    } else {
      chunk[i] = std::max<std::uint64_t>(1, budget / elements);
      break;
    }
  }
  return chunk;
}

// ---- checks before a read (train/hdf5_checks.cpp) ---------------------------------------------

// How a dataset's stored type is read: into which dtype, through which memory type.
struct StoredType {
  core::DType dtype = core::DType::f32;
  hid_t memory = -1;
  std::size_t file_size = 0;  // bytes per stored element
  bool enum_type = false;     // read through read_enum
};

// The dtype a dataset's stored type reads as. strict (checkpoints): exactly one of the four
// types File::write stores. Otherwise what users write: IEEE floats (float16 and float32 ->
// f32, float64 -> f64), integers (uint8 -> u8, others -> i64), and enums (h5py's bool).
StoredType stored_type(hid_t type, bool strict, const std::string& path, const std::string& name);
// The number of elements of `shape`, checked so that numel * element_size bytes fits in an
// int64: "[hdf5] 'f.h5': dataset 'x' of shape (268435456, 268435456, 64) is too large ...".
std::int64_t checked_numel(const core::Shape& shape, std::size_t element_size, const std::string& path,
                           const std::string& name);
// The data of a non-empty dataset must all be in the file: contiguous or compact storage of
// exactly numel * element_size bytes, or every chunk of a chunked one, with chunk dims that fit
// the dataset. strict: chunks exactly as File::write makes them (chunk_dims, the Fletcher32
// filter alone, every chunk of the size that gives).
void check_storage(hid_t file, hid_t ds, const core::Shape& shape, std::size_t element_size, bool strict,
                   const std::string& path,
                   const std::string& name, const std::string& what);
// A dataset's crc64 attribute (an unsigned 64-bit scalar), nullopt when there is none.
std::optional<std::uint64_t> read_crc_attribute(hid_t ds, const std::string& path, const std::string& name,
                                                const std::string& what);

}  // namespace moegrad::h5::detail

namespace moegrad::h5 {
struct File::Impl {
  detail::Handle file;
};
}  // namespace moegrad::h5
