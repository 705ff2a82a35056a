// HDF5 through its C API: File (open, create, in memory), datasets (read, write, list,
// data_ranges) and state dicts. Every hid_t lives in a Handle (closed by its destructor); every
// failing call turns HDF5's innermost error description into a moegrad::Error
// (train/hdf5_detail.h). Attributes: hdf5_attributes.cpp; the checks before a read:
// hdf5_checks.cpp; sealed files and atomic writes: hdf5_atomic.cpp.
#include "train/hdf5.h"

#include <hdf5.h>

#include <algorithm>
#include <bit>
#include <cstdio>
#include <cstring>
#include <utility>

#include <fmt/format.h>

#include "core/ops/creation.h"
#include "train/crc64.h"
#include "train/hdf5_detail.h"

namespace moegrad::h5 {

using core::DType;
using core::Shape;
using core::Tensor;
using namespace detail;

namespace {

static_assert(sizeof(bool) == 1, "b8 tensors are written as uint8");
static_assert(std::endian::native == std::endian::little,
              "crc64 attributes are computed over the host bytes, which must be the stored little-endian ones");

// ---- errors ----------------------------------------------------------------------------------

// And once when the library loads, so that nothing HDF5 does before the first call or at exit
// (H5_term_library) prints its stack.
[[maybe_unused]] const bool kQuietAtLoad = (quiet(), true);

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


// ---- handles ---------------------------------------------------------------------------------

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

}  // namespace

// ---- File ------------------------------------------------------------------------------------

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

File File::create_in_memory(const std::string& name, std::uint64_t user_block) {
  quiet();
  const std::string what = fmt::format("cannot create '{}' in memory", name);
  Handle fapl = checked(H5Pcreate(H5P_FILE_ACCESS), H5Pclose, what);
  check(H5Pset_fapl_core(fapl, std::size_t{1} << 20, /*backing_store=*/0), what);
  Handle fcpl = checked(H5Pcreate(H5P_FILE_CREATE), H5Pclose, what);
  if (user_block > 0) check(H5Pset_userblock(fcpl, user_block), what);
  auto impl = std::make_unique<Impl>();
  impl->file = checked(H5Fcreate(name.c_str(), H5F_ACC_TRUNC, fcpl, fapl), H5Fclose, what);
  return File(name, std::move(impl));
}

std::vector<unsigned char> File::image() {
  const hid_t f = impl("image").file;
  const std::string what = fmt::format("cannot take the image of '{}'", path_);
  check(H5Fflush(f, H5F_SCOPE_GLOBAL), what);
  // HDF5 gives the image from the superblock on; the user block (zeros) goes in front.
  Handle fcpl = checked(H5Fget_create_plist(f), H5Pclose, what);
  hsize_t user_block = 0;
  check(H5Pget_userblock(fcpl, &user_block), what);
  const ssize_t n = check(H5Fget_file_image(f, nullptr, 0), what);
  std::vector<unsigned char> out;
  try {
    out.resize(static_cast<std::size_t>(user_block) + static_cast<std::size_t>(n));
  } catch (const std::bad_alloc&) {
    fail("hdf5", "'{}': cannot allocate {} bytes for the file's image", path_, user_block + static_cast<hsize_t>(n));
  }
  if (n > 0) check(H5Fget_file_image(f, out.data() + user_block, static_cast<std::size_t>(n)), what);
  return out;
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

Tensor File::read(const std::string& dataset, const ReadOptions& options) const {
  const hid_t f = impl("read").file;
  const H5I_type_t kind = object_type(f, dataset);
  MOEGRAD_CHECK(kind != H5I_BADID, "hdf5", "'{}' has no dataset '{}'", path_, dataset);
  MOEGRAD_CHECK(kind == H5I_DATASET, "hdf5", "'{}': '{}' is a {}, not a dataset", path_, dataset,
                kind == H5I_GROUP ? "group" : "named type");
  const std::string name = absolute(dataset);
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
    for (hsize_t d : dims) {
      MOEGRAD_CHECK(d <= static_cast<hsize_t>(INT64_MAX), "hdf5", "'{}': dataset '{}' has a dimension of {}: too large",
                    path_, name, d);
      shape.push_back(static_cast<std::int64_t>(d));
    }
  } else {
    MOEGRAD_CHECK(sc == H5S_SCALAR, "hdf5", "'{}': dataset '{}' has a null dataspace (no values)", path_, dataset);
  }

  const StoredType stored = stored_type(type, options.strict, path_, dataset);
  // The declared size must be computable and held by the file before anything is allocated.
  const std::int64_t numel = checked_numel(shape, std::max(stored.file_size, core::dtype_size(stored.dtype)), path_, dataset);
  if (numel > 0) check_storage(f, ds, shape, stored.file_size, options.strict, path_, dataset, what);

  std::optional<std::uint64_t> stored_crc = read_crc_attribute(ds, path_, dataset, what);
  if (options.strict && !stored_crc)
    fail("hdf5", "'{}': dataset '{}' has no '{}' attribute (every checkpoint dataset carries one)", path_, dataset,
         kCrcAttribute);
  Tensor t = stored.enum_type ? read_enum(ds, type, shape, what) : core::empty(shape, {stored.dtype});
  if (!stored.enum_type && numel > 0 && H5Dread(ds, stored.memory, H5S_ALL, H5S_ALL, H5P_DEFAULT, t.raw_data()) < 0) {
    if (fletcher32_failed()) {
      H5Eclear2(H5E_DEFAULT);
      throw ChecksumError(fmt::format("[hdf5] '{}': checksum mismatch in dataset '{}' (Fletcher32): the data is corrupted",
                                      path_, name),
                          dataset);
    }
    fail_h5(what);
  }
  // The crc64 attribute (WriteOptions::checksum): recomputed over the values as read, which
  // for the types File::write stores are the stored little-endian bytes.
  if (stored_crc) {
    const std::uint64_t actual = crc64(t.raw_data(), static_cast<std::size_t>(t.numel()) * core::dtype_size(t.dtype()));
    if (actual != *stored_crc)
      throw ChecksumError(fmt::format("[hdf5] '{}': checksum mismatch in dataset '{}' (crc64 {:016x}, stored {:016x}): "
                                      "the data is corrupted",
                                      path_, name, actual, *stored_crc),
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
    // Chunk addresses count from the superblock (HDF5 1.10), after any user block.
    Handle fcpl = checked(H5Fget_create_plist(f), H5Pclose, what);
    hsize_t user_block = 0;
    check(H5Pget_userblock(fcpl, &user_block), what);
    Handle space = checked(H5Dget_space(ds), H5Sclose, what);  // 1.10 does not take H5S_ALL here
    hsize_t n = 0;
    check(H5Dget_num_chunks(ds, space, &n), what);
    for (hsize_t i = 0; i < n; ++i) {
      unsigned filter_mask = 0;
      haddr_t addr = 0;
      hsize_t size = 0;
      check(H5Dget_chunk_info(ds, space, i, nullptr, &filter_mask, &addr, &size), what);
      out.push_back({addr + user_block, size});
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
  if (options.checksum) {
    const std::uint64_t crc = crc64(host.raw_data(), static_cast<std::size_t>(host.numel()) * core::dtype_size(host.dtype()));
    Handle attr_space = scalar_space();
    Handle attr = checked(H5Acreate2(ds, kCrcAttribute, H5T_STD_U64LE, attr_space, H5P_DEFAULT, H5P_DEFAULT),
                          H5Aclose, what);
    check(H5Awrite(attr, H5T_NATIVE_UINT64, &crc), what);
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

// ---- state dicts -----------------------------------------------------------------------------

nn::StateDict read_state_dict(const File& f, const std::string& group, const ReadOptions& options) {
  nn::StateDict sd;
  for (const auto& key : f.list(group, /*recursive=*/true)) sd.insert(key, f.read(join(group, key), options));
  return sd;
}

void write_state_dict(File& f, const std::string& group, const nn::StateDict& sd, const WriteOptions& options) {
  f.create_group(group);  // so that an empty state_dict reads back as empty
  for (const auto& [key, value] : sd) {
    MOEGRAD_CHECK(!key.empty(), "hdf5", "'{}': a state_dict key is empty", f.path());
    f.write(join(group, key), value, options);
  }
}

}  // namespace moegrad::h5
