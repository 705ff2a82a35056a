// HDF5 through its C API. Every hid_t lives in a Handle (closed by its destructor); every
// failing call turns HDF5's innermost error description into a moegrad::Error.
#include "train/hdf5.h"

#include <fcntl.h>
#include <hdf5.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <bit>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <utility>

#include <fmt/format.h>

#include "core/ops/creation.h"

namespace moegrad::h5 {

using core::DType;
using core::Shape;
using core::Tensor;

namespace {

static_assert(sizeof(bool) == 1, "b8 tensors are written as uint8");
static_assert(std::endian::native == std::endian::little,
              "crc32 attributes are computed over the host bytes, which must be the stored little-endian ones");

// ---- errors ----------------------------------------------------------------------------------

// HDF5 prints its error stack to stderr by default; we report through exceptions instead.
// Called at every entry point: in thread-safe builds (Debian's is one) the setting and the
// error stack are per thread.
void quiet() { H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr); }

// The most specific description on HDF5's error stack (walked from the innermost frame).
std::string innermost_error() {
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

[[noreturn]] void fail_h5(const std::string& what) { fail("hdf5", "{}: {}", what, innermost_error()); }

// Whether HDF5's error stack holds the Fletcher32 filter's verdict (the stack is left as is).
bool fletcher32_failed() {
  bool found = false;
  H5Ewalk2(
      H5E_DEFAULT, H5E_WALK_UPWARD,
      [](unsigned, const H5E_error2_t* e, void* data) -> herr_t {
        if (e->desc && std::strstr(e->desc, "Fletcher32 checksum")) *static_cast<bool*>(data) = true;
        return 0;
      },
      &found);
  return found;
}

// CRC-32 (the reflected 0xEDB88320 polynomial of zlib, PNG and Python's zlib.crc32).
std::uint32_t crc32(const void* data, std::size_t n) {
  static const std::array<std::uint32_t, 256> table = [] {
    std::array<std::uint32_t, 256> t{};
    for (std::uint32_t i = 0; i < 256; ++i) {
      std::uint32_t c = i;
      for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
      t[i] = c;
    }
    return t;
  }();
  std::uint32_t c = 0xFFFFFFFFu;
  const auto* p = static_cast<const unsigned char*>(data);
  for (std::size_t i = 0; i < n; ++i) c = table[(c ^ p[i]) & 0xFFu] ^ (c >> 8);
  return c ^ 0xFFFFFFFFu;
}

constexpr const char* kCrcAttribute = "crc32";
constexpr std::uint64_t kChunkBytes = std::uint64_t{1} << 20;

// Chunk dims for a checksummed array: whole trailing dims while they fit in kChunkBytes, part
// of the next one, 1 for the leading rest.
std::vector<hsize_t> chunk_dims(const std::vector<hsize_t>& dims, std::size_t element_size) {
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

template <class T> T check(T status, const std::string& what) {
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

Handle checked(hid_t id, Handle::Closer closer, const std::string& what) {
  if (id < 0) fail_h5(what);
  return Handle(id, closer);
}

Handle scalar_space() { return checked(H5Screate(H5S_SCALAR), H5Sclose, "cannot create a dataspace"); }

// Property lists that turn off object timestamps, so the same content gives the same bytes.
Handle untimed(hid_t cls) {
  Handle p = checked(H5Pcreate(cls), H5Pclose, "cannot create a property list");
  check(H5Pset_obj_track_times(p, 0), "cannot set a property");
  return p;
}

// ---- paths -----------------------------------------------------------------------------------

std::vector<std::string> components(const std::string& path) {
  std::vector<std::string> out;
  std::size_t i = 0;
  while (i < path.size()) {
    const std::size_t j = path.find('/', i);
    const std::size_t end = j == std::string::npos ? path.size() : j;
    if (end > i) out.push_back(path.substr(i, end - i));
    i = end + 1;
  }
  return out;
}

std::string absolute(const std::string& path) {
  std::string out;
  for (const auto& c : components(path)) out += "/" + c;
  return out.empty() ? "/" : out;
}

std::string join(const std::string& group, const std::string& key) {
  const std::string g = absolute(group);
  return g == "/" ? "/" + key : g + "/" + key;
}

// H5I_DATASET, H5I_GROUP, ... for an existing object; H5I_BADID when nothing is there.
H5I_type_t object_type(hid_t file, const std::string& path) {
  std::string cur;
  for (const auto& c : components(path)) {
    cur += "/" + c;
    if (H5Lexists(file, cur.c_str(), H5P_DEFAULT) <= 0) return H5I_BADID;
  }
  if (cur.empty()) return H5I_GROUP;  // the root
  if (H5Oexists_by_name(file, cur.c_str(), H5P_DEFAULT) <= 0) return H5I_BADID;  // dangling link
  const hid_t obj = H5Oopen(file, cur.c_str(), H5P_DEFAULT);
  if (obj < 0) return H5I_BADID;
  const H5I_type_t type = H5Iget_type(obj);
  H5Oclose(obj);
  return type;
}

const char* class_name(H5T_class_t c) {
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
std::string a_class(H5T_class_t c) {
  const std::string name = class_name(c);
  return (std::string("aeiou").find(name[0]) != std::string::npos ? "an " : "a ") + name;
}

struct TypePair {
  hid_t file;
  hid_t memory;
};

TypePair types_for(DType d) {
  switch (d) {
    case DType::f32: return {H5T_IEEE_F32LE, H5T_NATIVE_FLOAT};
    case DType::f64: return {H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE};
    case DType::i64: return {H5T_STD_I64LE, H5T_NATIVE_INT64};
    case DType::b8:
    case DType::u8: return {H5T_STD_U8LE, H5T_NATIVE_UINT8};
  }
  fail("hdf5", "unsupported dtype {}", core::dtype_name(d));
}

// Reads an enum dataset (h5py's bool is an enum over int8) through its native base type.
Tensor read_enum(hid_t ds, hid_t file_type, const Shape& shape, const std::string& what) {
  Handle native = checked(H5Tget_native_type(file_type, H5T_DIR_ASCEND), H5Tclose, what);
  Handle base = checked(H5Tget_super(native), H5Tclose, what);
  const std::size_t size = H5Tget_size(base);
  const bool is_signed = H5Tget_sign(base) == H5T_SGN_2;
  const std::int64_t n = core::shape_numel(shape);
  if (size == 1) {  // bool and other byte enums: the raw values
    Tensor t = core::empty(shape, {DType::u8});
    if (n > 0) check(H5Dread(ds, native, H5S_ALL, H5S_ALL, H5P_DEFAULT, t.raw_data()), what);
    return t;
  }
  std::vector<unsigned char> raw(static_cast<std::size_t>(n) * size);
  if (n > 0) check(H5Dread(ds, native, H5S_ALL, H5S_ALL, H5P_DEFAULT, raw.data()), what);
  Tensor t = core::empty(shape, {DType::i64});
  auto* out = t.data<std::int64_t>();
  for (std::int64_t i = 0; i < n; ++i) {
    const unsigned char* p = raw.data() + i * size;
    auto get = [&]<class S, class U>() -> std::int64_t {
      if (is_signed) {
        S v;
        std::memcpy(&v, p, sizeof v);
        return v;
      }
      U v;
      std::memcpy(&v, p, sizeof v);
      return static_cast<std::int64_t>(v);
    };
    switch (size) {
      case 2: out[i] = get.template operator()<std::int16_t, std::uint16_t>(); break;
      case 4: out[i] = get.template operator()<std::int32_t, std::uint32_t>(); break;
      case 8: out[i] = get.template operator()<std::int64_t, std::uint64_t>(); break;
      default: fail("hdf5", "{}: enum base of {} bytes is not supported", what, size);
    }
  }
  return t;
}

// Throws "[hdf5] 'f.h5' is open read-only; cannot <action>" unless the file was created here.
void require_writable(hid_t file, const std::string& path, const std::string& action) {
  unsigned intent = 0;
  check(H5Fget_intent(file, &intent), fmt::format("cannot query '{}'", path));
  MOEGRAD_CHECK(intent & H5F_ACC_RDWR, "hdf5", "'{}' is open read-only; cannot {}", path, action);
}

}  // namespace

// ---- File ------------------------------------------------------------------------------------

struct File::Impl {
  Handle file;
};

File::File(std::string path, std::unique_ptr<Impl> impl) : path_(std::move(path)), impl_(std::move(impl)) {}
File::File(File&&) noexcept = default;
// For the destructor and move assignment, which only log.
void File::close_and_log() noexcept {
  if (!impl_) return;
  quiet();
  if (impl_->file.close() < 0) {
    try {
      fmt::print(stderr, "moegrad: [hdf5] closing '{}' failed: {}\n", path_, innermost_error());
    } catch (...) {  // logging must not throw out of a destructor
    }
  }
  impl_.reset();
}

File& File::operator=(File&& o) noexcept {
  if (this != &o) {
    close_and_log();
    path_ = std::move(o.path_);
    impl_ = std::move(o.impl_);
  }
  return *this;
}

File::~File() { close_and_log(); }

File File::open(const std::string& path, Mode mode) {
  quiet();
  auto impl = std::make_unique<Impl>();
  impl->file = checked(H5Fopen(path.c_str(), mode == Mode::read ? H5F_ACC_RDONLY : H5F_ACC_RDWR, H5P_DEFAULT),
                       H5Fclose, fmt::format("cannot open '{}'", path));
  return File(path, std::move(impl));
}

File File::create(const std::string& path) {
  quiet();
  auto impl = std::make_unique<Impl>();
  impl->file = checked(H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT), H5Fclose,
                       fmt::format("cannot create '{}'", path));
  return File(path, std::move(impl));
}

bool File::is_open() const { return impl_ != nullptr; }

const File::Impl& File::impl(const char* what) const {
  MOEGRAD_CHECK(impl_ != nullptr, "hdf5", "'{}' is closed ({})", path_, what);
  quiet();
  return *impl_;
}

void File::close() {
  if (!impl_) return;
  quiet();
  const herr_t status = impl_->file.close();
  impl_.reset();
  if (status < 0) fail_h5(fmt::format("cannot close '{}'", path_));
}

void File::flush() {
  const hid_t f = impl("flush").file;
  check(H5Fflush(f, H5F_SCOPE_GLOBAL), fmt::format("cannot flush '{}'", path_));
}

bool File::exists(const std::string& object_path) const {
  return object_type(impl("exists").file, object_path) != H5I_BADID;
}

void File::create_group(const std::string& group) {
  const hid_t f = impl("create_group").file;
  require_writable(f, path_, fmt::format("create group '{}'", group));
  std::string cur;
  for (const auto& c : components(group)) {
    cur += "/" + c;
    const H5I_type_t t = object_type(f, cur);
    if (t == H5I_GROUP) continue;
    MOEGRAD_CHECK(t == H5I_BADID, "hdf5", "'{}': '{}' exists and is not a group", path_, cur);
    Handle gcpl = untimed(H5P_GROUP_CREATE);
    checked(H5Gcreate2(f, cur.c_str(), H5P_DEFAULT, gcpl, H5P_DEFAULT), H5Gclose,
            fmt::format("cannot create group '{}' in '{}'", cur, path_));
  }
}

Tensor File::read(const std::string& dataset) const {
  const hid_t f = impl("read").file;
  const H5I_type_t kind = object_type(f, dataset);
  MOEGRAD_CHECK(kind != H5I_BADID, "hdf5", "'{}' has no dataset '{}'", path_, dataset);
  MOEGRAD_CHECK(kind == H5I_DATASET, "hdf5", "'{}': '{}' is a {}, not a dataset", path_, dataset,
                kind == H5I_GROUP ? "group" : "named type");
  const std::string what = fmt::format("cannot read dataset '{}' in '{}'", dataset, path_);
  Handle ds = checked(H5Dopen2(f, dataset.c_str(), H5P_DEFAULT), H5Dclose, what);
  Handle type = checked(H5Dget_type(ds), H5Tclose, what);
  Handle space = checked(H5Dget_space(ds), H5Sclose, what);

  Shape shape;
  const H5S_class_t sc = H5Sget_simple_extent_type(space);
  if (sc == H5S_SIMPLE) {
    const int rank = check(H5Sget_simple_extent_ndims(space), what);
    std::vector<hsize_t> dims(static_cast<std::size_t>(rank));
    check(H5Sget_simple_extent_dims(space, dims.data(), nullptr), what);
    for (hsize_t d : dims) shape.push_back(static_cast<std::int64_t>(d));
  } else {
    MOEGRAD_CHECK(sc == H5S_SCALAR, "hdf5", "'{}': dataset '{}' has a null dataspace (no values)", path_, dataset);
  }

  const H5T_class_t cls = H5Tget_class(type);
  const std::size_t size = H5Tget_size(type);
  DType dtype;
  hid_t memory;
  if (cls == H5T_FLOAT) {
    dtype = size <= 4 ? DType::f32 : DType::f64;
    memory = size <= 4 ? H5T_NATIVE_FLOAT : H5T_NATIVE_DOUBLE;
  } else if (cls == H5T_INTEGER) {
    const bool u8 = size == 1 && H5Tget_sign(type) == H5T_SGN_NONE;
    dtype = u8 ? DType::u8 : DType::i64;
    memory = u8 ? H5T_NATIVE_UINT8 : H5T_NATIVE_INT64;
  } else if (cls == H5T_ENUM) {
    return read_enum(ds, type, shape, what);
  } else {
    fail("hdf5", "'{}': dataset '{}' has type {}; only float, integer and bool datasets become tensors", path_,
         dataset, class_name(cls));
  }
  Tensor t = core::empty(shape, {dtype});
  if (t.numel() > 0 && H5Dread(ds, memory, H5S_ALL, H5S_ALL, H5P_DEFAULT, t.raw_data()) < 0) {
    if (fletcher32_failed()) {
      H5Eclear2(H5E_DEFAULT);
      throw ChecksumError(fmt::format("[hdf5] '{}': checksum mismatch in dataset '{}' (Fletcher32): the data is corrupted",
                                      path_, absolute(dataset)),
                          dataset);
    }
    fail_h5(what);
  }
  // A crc32 attribute (WriteOptions::checksum on a 0-d tensor): recompute it over the bytes
  // as stored, read without conversion.
  if (check(H5Aexists(ds, kCrcAttribute), what) > 0) {
    Handle attr = checked(H5Aopen(ds, kCrcAttribute, H5P_DEFAULT), H5Aclose, what);
    std::uint32_t stored = 0;
    check(H5Aread(attr, H5T_NATIVE_UINT32, &stored), what);
    std::vector<unsigned char> raw(static_cast<std::size_t>(t.numel()) * size);
    if (!raw.empty()) check(H5Dread(ds, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, raw.data()), what);
    const std::uint32_t actual = crc32(raw.data(), raw.size());
    if (actual != stored)
      throw ChecksumError(fmt::format("[hdf5] '{}': checksum mismatch in dataset '{}' (crc32 {:08x}, stored {:08x}): "
                                      "the data is corrupted",
                                      path_, absolute(dataset), actual, stored),
                          dataset);
  }
  return t;
}

std::vector<ByteRange> File::data_ranges(const std::string& dataset) const {
  const hid_t f = impl("data_ranges").file;
  MOEGRAD_CHECK(object_type(f, dataset) == H5I_DATASET, "hdf5", "'{}' has no dataset '{}'", path_, dataset);
  const std::string what = fmt::format("cannot locate the data of '{}' in '{}'", dataset, path_);
  Handle ds = checked(H5Dopen2(f, absolute(dataset).c_str(), H5P_DEFAULT), H5Dclose, what);
  Handle dcpl = checked(H5Dget_create_plist(ds), H5Pclose, what);
  std::vector<ByteRange> out;
  const H5D_layout_t layout = H5Pget_layout(dcpl);
  if (layout == H5D_CONTIGUOUS) {
    const haddr_t addr = H5Dget_offset(ds);
    H5Eclear2(H5E_DEFAULT);  // HADDR_UNDEF (nothing allocated) leaves an error on the stack
    if (addr != HADDR_UNDEF) out.push_back({addr, H5Dget_storage_size(ds)});
  } else if (layout == H5D_CHUNKED) {
    Handle space = checked(H5Dget_space(ds), H5Sclose, what);  // 1.10 does not take H5S_ALL here
    hsize_t n = 0;
    check(H5Dget_num_chunks(ds, space, &n), what);
    for (hsize_t i = 0; i < n; ++i) {
      unsigned filter_mask = 0;
      haddr_t addr = 0;
      hsize_t size = 0;
      check(H5Dget_chunk_info(ds, space, i, nullptr, &filter_mask, &addr, &size), what);
      out.push_back({addr, size});
    }
  }
  return out;
}

void File::write(const std::string& dataset, const Tensor& t, const WriteOptions& options) {
  const hid_t f = impl("write").file;
  require_writable(f, path_, fmt::format("write dataset '{}'", dataset));
  MOEGRAD_CHECK(t.defined(), "hdf5", "'{}': cannot write an undefined tensor to '{}'", path_, dataset);
  const auto parts = components(dataset);
  MOEGRAD_CHECK(!parts.empty(), "hdf5", "'{}': '{}' is not a dataset name", path_, dataset);
  const std::string name = absolute(dataset);
  // Intermediate groups, then replace whatever dataset has this name.
  create_group(name.substr(0, name.rfind('/')));
  const H5I_type_t kind = object_type(f, name);
  if (kind != H5I_BADID) {
    MOEGRAD_CHECK(kind == H5I_DATASET, "hdf5", "'{}': cannot write dataset '{}': a group of that name exists",
                  path_, dataset);
    check(H5Ldelete(f, name.c_str(), H5P_DEFAULT), fmt::format("cannot replace dataset '{}' in '{}'", dataset, path_));
  }

  const Tensor host = core::contiguous(core::to_device(t, core::Device::cpu()));
  const TypePair types = types_for(host.dtype());
  Handle space;
  std::vector<hsize_t> dims;
  if (host.dim() == 0) {
    space = scalar_space();
  } else {
    for (std::int64_t d : host.shape()) dims.push_back(static_cast<hsize_t>(d));
    space = checked(H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr), H5Sclose,
                    "cannot create a dataspace");
  }
  const std::string what = fmt::format("cannot write dataset '{}' in '{}'", dataset, path_);
  Handle dcpl = untimed(H5P_DATASET_CREATE);
  const bool fletcher32 = options.checksum && host.dim() > 0 && host.numel() > 0;
  if (fletcher32) {
    const std::vector<hsize_t> chunk = chunk_dims(dims, core::dtype_size(host.dtype()));
    check(H5Pset_chunk(dcpl, static_cast<int>(chunk.size()), chunk.data()), what);
    check(H5Pset_fletcher32(dcpl), what);
  }
  Handle ds = checked(H5Dcreate2(f, name.c_str(), types.file, space, H5P_DEFAULT, dcpl, H5P_DEFAULT), H5Dclose, what);
  if (host.numel() > 0) check(H5Dwrite(ds, types.memory, H5S_ALL, H5S_ALL, H5P_DEFAULT, host.raw_data()), what);
  if (options.checksum && host.dim() == 0) {
    const std::uint32_t crc = crc32(host.raw_data(), core::dtype_size(host.dtype()));
    Handle attr_space = scalar_space();
    Handle attr = checked(H5Acreate2(ds, kCrcAttribute, H5T_STD_U32LE, attr_space, H5P_DEFAULT, H5P_DEFAULT),
                          H5Aclose, what);
    check(H5Awrite(attr, H5T_NATIVE_UINT32, &crc), what);
    check(attr.close(), what);
  }
  check(ds.close(), what);
}

namespace {

void collect(hid_t group, const std::string& prefix, bool recursive, const std::string& what,
             std::vector<std::string>& out) {
  H5G_info_t info;
  check(H5Gget_info(group, &info), what);
  for (hsize_t i = 0; i < info.nlinks; ++i) {
    const ssize_t len = check(H5Lget_name_by_idx(group, ".", H5_INDEX_NAME, H5_ITER_INC, i, nullptr, 0, H5P_DEFAULT), what);
    std::string name(static_cast<std::size_t>(len) + 1, '\0');
    check(H5Lget_name_by_idx(group, ".", H5_INDEX_NAME, H5_ITER_INC, i, name.data(), name.size(), H5P_DEFAULT), what);
    name.resize(static_cast<std::size_t>(len));
    if (H5Oexists_by_name(group, name.c_str(), H5P_DEFAULT) <= 0) continue;  // dangling soft link
    Handle obj = checked(H5Oopen(group, name.c_str(), H5P_DEFAULT), H5Oclose, what);
    const H5I_type_t type = H5Iget_type(obj);
    if (type == H5I_DATASET) {
      out.push_back(prefix + name);
    } else if (type == H5I_GROUP && recursive) {
      collect(obj, prefix + name + "/", true, what, out);
    }
  }
}

}  // namespace

std::vector<std::string> File::list(const std::string& group, bool recursive) const {
  const hid_t f = impl("list").file;
  const H5I_type_t kind = object_type(f, group);
  MOEGRAD_CHECK(kind != H5I_BADID, "hdf5", "'{}' has no group '{}'", path_, group);
  MOEGRAD_CHECK(kind == H5I_GROUP, "hdf5", "'{}': '{}' is not a group", path_, group);
  const std::string what = fmt::format("cannot list group '{}' in '{}'", group, path_);
  Handle g = checked(H5Gopen2(f, absolute(group).c_str(), H5P_DEFAULT), H5Gclose, what);
  std::vector<std::string> out;
  collect(g, "", recursive, what, out);
  std::sort(out.begin(), out.end());
  return out;
}

// ---- attributes ------------------------------------------------------------------------------

namespace {

// The root group's attribute `name`, or an invalid handle when there is none.
Handle open_root_attribute(hid_t file, const std::string& name, const std::string& path) {
  const std::string what = fmt::format("cannot read attribute '{}' of '{}'", name, path);
  Handle root = checked(H5Gopen2(file, "/", H5P_DEFAULT), H5Gclose, what);
  if (check(H5Aexists(root, name.c_str()), what) == 0) return {};
  return checked(H5Aopen(root, name.c_str(), H5P_DEFAULT), H5Aclose, what);
}

void require_one_value(hid_t attr, const std::string& name, const std::string& path, const std::string& what) {
  Handle space = checked(H5Aget_space(attr), H5Sclose, what);
  const hssize_t n = check(H5Sget_simple_extent_npoints(space), what);
  MOEGRAD_CHECK(n == 1, "hdf5", "'{}': attribute '{}' holds {} values, expected one", path, name, n);
}

}  // namespace

std::vector<std::string> File::attribute_names() const {
  const hid_t f = impl("attribute_names").file;
  const std::string what = fmt::format("cannot list the attributes of '{}'", path_);
  Handle root = checked(H5Gopen2(f, "/", H5P_DEFAULT), H5Gclose, what);
  std::vector<std::string> out;
  check(H5Aiterate2(
            root, H5_INDEX_NAME, H5_ITER_INC, nullptr,
            [](hid_t, const char* name, const H5A_info_t*, void* data) -> herr_t {
              static_cast<std::vector<std::string>*>(data)->emplace_back(name);
              return 0;
            },
            &out),
        what);
  std::sort(out.begin(), out.end());
  return out;
}

bool File::remove_attribute(const std::string& name) {
  const hid_t f = impl("remove_attribute").file;
  require_writable(f, path_, fmt::format("remove attribute '{}'", name));
  const std::string what = fmt::format("cannot remove attribute '{}' of '{}'", name, path_);
  Handle root = checked(H5Gopen2(f, "/", H5P_DEFAULT), H5Gclose, what);
  if (check(H5Aexists(root, name.c_str()), what) == 0) return false;
  check(H5Adelete(root, name.c_str()), what);
  return true;
}

std::optional<std::string> File::attribute_string(const std::string& name) const {
  const hid_t f = impl("attribute_string").file;
  Handle attr = open_root_attribute(f, name, path_);
  if (attr.get() < 0) return std::nullopt;
  const std::string what = fmt::format("cannot read attribute '{}' of '{}'", name, path_);
  Handle type = checked(H5Aget_type(attr), H5Tclose, what);
  const H5T_class_t cls = H5Tget_class(type);
  MOEGRAD_CHECK(cls == H5T_STRING, "hdf5", "'{}': attribute '{}' is {}, not a string", path_, name, a_class(cls));
  require_one_value(attr, name, path_, what);
  if (check(H5Tis_variable_str(type), what) > 0) {
    Handle memory = checked(H5Tcopy(H5T_C_S1), H5Tclose, what);
    check(H5Tset_size(memory, H5T_VARIABLE), what);
    check(H5Tset_cset(memory, H5Tget_cset(type)), what);
    char* s = nullptr;
    check(H5Aread(attr, memory, &s), what);
    std::string out = s ? s : "";
    if (s) H5free_memory(s);
    return out;
  }
  // Fixed length: read the bytes as stored, then drop the padding.
  Handle memory = checked(H5Tcopy(type), H5Tclose, what);
  std::string out(H5Tget_size(type), '\0');
  if (!out.empty()) check(H5Aread(attr, memory, out.data()), what);
  const std::size_t nul = out.find('\0');
  if (nul != std::string::npos) out.resize(nul);
  if (H5Tget_strpad(type) == H5T_STR_SPACEPAD) {
    while (!out.empty() && out.back() == ' ') out.pop_back();
  }
  return out;
}

std::optional<double> File::attribute_number(const std::string& name) const {
  const hid_t f = impl("attribute_number").file;
  Handle attr = open_root_attribute(f, name, path_);
  if (attr.get() < 0) return std::nullopt;
  const std::string what = fmt::format("cannot read attribute '{}' of '{}'", name, path_);
  Handle type = checked(H5Aget_type(attr), H5Tclose, what);
  const H5T_class_t cls = H5Tget_class(type);
  MOEGRAD_CHECK(cls == H5T_INTEGER || cls == H5T_FLOAT, "hdf5", "'{}': attribute '{}' is {}, not a number", path_,
                name, a_class(cls));
  require_one_value(attr, name, path_, what);
  double v = 0;
  check(H5Aread(attr, H5T_NATIVE_DOUBLE, &v), what);
  return v;
}

namespace {

// Replaces the root attribute `name` with a scalar of file type `type`, written from `data`.
void write_root_attribute(hid_t file, const std::string& path, const std::string& name, hid_t type, hid_t memory,
                          const void* data) {
  require_writable(file, path, fmt::format("set attribute '{}'", name));
  const std::string what = fmt::format("cannot write attribute '{}' of '{}'", name, path);
  Handle root = checked(H5Gopen2(file, "/", H5P_DEFAULT), H5Gclose, what);
  if (check(H5Aexists(root, name.c_str()), what) > 0) check(H5Adelete(root, name.c_str()), what);
  Handle space = scalar_space();
  Handle attr = checked(H5Acreate2(root, name.c_str(), type, space, H5P_DEFAULT, H5P_DEFAULT), H5Aclose, what);
  check(H5Awrite(attr, memory, data), what);
  check(attr.close(), what);
}

}  // namespace

void File::set_attribute(const std::string& name, const std::string& value) {
  const hid_t f = impl("set_attribute").file;
  const std::string what = fmt::format("cannot write attribute '{}' of '{}'", name, path_);
  Handle type = checked(H5Tcopy(H5T_C_S1), H5Tclose, what);
  check(H5Tset_size(type, H5T_VARIABLE), what);
  check(H5Tset_cset(type, H5T_CSET_UTF8), what);
  const char* p = value.c_str();
  write_root_attribute(f, path_, name, type, type, &p);
}

void File::set_attribute(const std::string& name, std::int64_t value) {
  write_root_attribute(impl("set_attribute").file, path_, name, H5T_STD_I64LE, H5T_NATIVE_INT64, &value);
}

void File::set_attribute(const std::string& name, double value) {
  write_root_attribute(impl("set_attribute").file, path_, name, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, &value);
}

// ---- state dicts -----------------------------------------------------------------------------

nn::StateDict read_state_dict(const File& f, const std::string& group) {
  nn::StateDict sd;
  for (const auto& key : f.list(group, /*recursive=*/true)) sd.insert(key, f.read(join(group, key)));
  return sd;
}

void write_state_dict(File& f, const std::string& group, const nn::StateDict& sd, const WriteOptions& options) {
  f.create_group(group);  // so that an empty state_dict reads back as empty
  for (const auto& [key, value] : sd) {
    MOEGRAD_CHECK(!key.empty(), "hdf5", "'{}': a state_dict key is empty", f.path());
    f.write(join(group, key), value, options);
  }
}

// ---- file type -------------------------------------------------------------------------------

bool is_hdf5(const std::string& path) {
  static constexpr char kSignature[8] = {'\x89', 'H', 'D', 'F', '\r', '\n', '\x1a', '\n'};
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec)) return false;
  const auto size = std::filesystem::file_size(path, ec);
  if (ec) return false;
  std::ifstream in(path, std::ios::binary);
  if (!in) return false;
  // The superblock sits at 0 or after a user block of 512, 1024, 2048, ... bytes.
  for (std::uintmax_t at = 0; at + sizeof kSignature <= size; at = at == 0 ? 512 : at * 2) {
    char buf[sizeof kSignature];
    in.seekg(static_cast<std::streamoff>(at));
    if (!in.read(buf, sizeof buf)) return false;
    if (std::memcmp(buf, kSignature, sizeof buf) == 0) return true;
  }
  return false;
}

// ---- atomic writes ---------------------------------------------------------------------------

namespace {

void fsync_path(const std::string& path, bool directory) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | (directory ? O_DIRECTORY : 0));
  if (fd < 0) fail("hdf5", "cannot open '{}' to fsync it: {}", path, std::strerror(errno));
  if (::fsync(fd) != 0) {
    const int err = errno;
    ::close(fd);
    fail("hdf5", "cannot fsync '{}': {}", path, std::strerror(err));
  }
  ::close(fd);
}

// Creates (exclusively) and returns a new empty file ".<name>.tmp-<pid>-<n>" beside target.
std::string create_temporary(const std::filesystem::path& dir, const std::string& name) {
  static std::atomic<unsigned> counter{0};
  for (int attempt = 0; attempt < 100; ++attempt) {
    const std::string tmp = (dir / fmt::format(".{}.tmp-{}-{}", name, ::getpid(), counter++)).string();
    const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    if (fd >= 0) {
      ::close(fd);
      return tmp;
    }
    if (errno != EEXIST) fail("hdf5", "cannot create a temporary file '{}': {}", tmp, std::strerror(errno));
  }
  fail("hdf5", "cannot create a temporary file for '{}' in '{}'", name, dir.string());
}

}  // namespace

void write_atomically(const std::string& path, const std::function<void(File&)>& fill) {
  namespace fs = std::filesystem;
  const fs::path target(path);
  const std::string name = target.filename().string();
  MOEGRAD_CHECK(!name.empty() && name != "." && name != "..", "hdf5", "'{}' is not a file name", path);
  const fs::path dir = target.has_parent_path() ? target.parent_path() : fs::path(".");
  const std::string tmp = create_temporary(dir, name);
  try {
    {
      File f = File::create(tmp);
      fill(f);
      f.close();
    }
    fsync_path(tmp, false);
    if (std::rename(tmp.c_str(), path.c_str()) != 0)
      fail("hdf5", "cannot rename '{}' to '{}': {}", tmp, path, std::strerror(errno));
  } catch (...) {
    std::error_code ec;
    fs::remove(tmp, ec);
    throw;
  }
  fsync_path(dir.string(), true);
}

}  // namespace moegrad::h5
