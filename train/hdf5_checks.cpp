// The checks File::read makes before it allocates or reads: the stored type (an IEEE float
// layout or a plain integer; strictly the four types File::write stores for checkpoints), a
// size that fits, all the data in the file, and the crc64 attribute.
#include <hdf5.h>

#include <algorithm>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "core/shape.h"
#include "train/hdf5_detail.h"

namespace moegrad::h5::detail {

using core::DType;
using core::Shape;

namespace {

// IEEE 754 binary16/32/64: (size, sign position, exponent position and size, mantissa
// position and size, exponent bias), as H5Tget_fields and H5Tget_ebias give them.
struct FloatLayout {
  std::size_t size, spos, epos, esize, mpos, msize, ebias;
};
constexpr FloatLayout kIeeeFloats[] = {{2, 15, 10, 5, 0, 10, 15}, {4, 31, 23, 8, 0, 23, 127}, {8, 63, 52, 11, 0, 52, 1023}};

const char* order_name(H5T_order_t o) {
  switch (o) {
    case H5T_ORDER_LE: return "little-endian";
    case H5T_ORDER_BE: return "big-endian";
    default: return "mixed byte order";
  }
}

// "float of 4 bytes, little-endian, 32 bits at offset 0, sign bit 31, exponent 23+8 bits with
// bias 0, mantissa 0+23 bits" and the like: everything the type's layout checks look at.
std::string describe_type(hid_t type) {
  const H5T_class_t cls = H5Tget_class(type);
  std::string out = fmt::format("{} of {} bytes", class_name(cls), H5Tget_size(type));
  if (cls != H5T_FLOAT && cls != H5T_INTEGER) return out;
  out += fmt::format(", {}, {} bits at offset {}", order_name(H5Tget_order(type)), H5Tget_precision(type),
                     H5Tget_offset(type));
  if (cls == H5T_INTEGER) return out + (H5Tget_sign(type) == H5T_SGN_NONE ? ", unsigned" : ", signed");
  std::size_t spos = 0, epos = 0, esize = 0, mpos = 0, msize = 0;
  H5Tget_fields(type, &spos, &epos, &esize, &mpos, &msize);
  out += fmt::format(", sign bit {}, exponent {}+{} bits with bias {}, mantissa {}+{} bits{}", spos, epos, esize,
                     H5Tget_ebias(type), mpos, msize, H5Tget_norm(type) == H5T_NORM_IMPLIED ? "" : ", no implied 1");
  return out;
}

bool plain_order(hid_t type) {
  const H5T_order_t o = H5Tget_order(type);
  return o == H5T_ORDER_LE || o == H5T_ORDER_BE;
}

// A float type laid out as IEEE binary16, 32 or 64 in either byte order (what numpy and h5py
// write); a damaged or exotic layout (a zeroed exponent bias, VAX floats, x87 long double)
// would convert to wrong values and is refused.
bool ieee_float(hid_t type) {
  const std::size_t size = H5Tget_size(type);
  if (!plain_order(type) || H5Tget_offset(type) != 0 || H5Tget_precision(type) != 8 * size ||
      H5Tget_norm(type) != H5T_NORM_IMPLIED || H5Tget_inpad(type) != H5T_PAD_ZERO)
    return false;
  std::size_t spos = 0, epos = 0, esize = 0, mpos = 0, msize = 0;
  if (H5Tget_fields(type, &spos, &epos, &esize, &mpos, &msize) < 0) return false;
  for (const FloatLayout& l : kIeeeFloats) {
    if (l.size == size && l.spos == spos && l.epos == epos && l.esize == esize && l.mpos == mpos && l.msize == msize &&
        l.ebias == H5Tget_ebias(type))
      return true;
  }
  return false;
}

// Two's-complement integers of 1, 2, 4 or 8 bytes using all their bits, either byte order.
bool plain_integer(hid_t type) {
  const std::size_t size = H5Tget_size(type);
  return plain_order(type) && H5Tget_offset(type) == 0 && H5Tget_precision(type) == 8 * size &&
         (size == 1 || size == 2 || size == 4 || size == 8);
}

}  // namespace

// The dtype a dataset's stored type reads as. strict (checkpoints): exactly one of the four
// types File::write stores. Otherwise what users write: IEEE floats (float16 and float32 ->
// f32, float64 -> f64), integers (uint8 -> u8, others -> i64), and enums (h5py's bool).
StoredType stored_type(hid_t type, bool strict, const std::string& path, const std::string& name) {
  const H5T_class_t cls = H5Tget_class(type);
  const std::size_t size = H5Tget_size(type);
  if (strict) {
    for (DType d : {DType::f32, DType::f64, DType::i64, DType::u8}) {
      const TypePair tp = types_for(d);
      if (H5Tequal(type, tp.file) > 0) return {d, tp.memory, size, false};
    }
    H5Eclear2(H5E_DEFAULT);
    fail("hdf5", "'{}': dataset '{}' is stored as {}; a checkpoint stores IEEE float32/float64 little-endian, "
         "int64 little-endian or uint8", path, name, describe_type(type));
  }
  if (cls == H5T_FLOAT) {
    MOEGRAD_CHECK(ieee_float(type), "hdf5", "'{}': dataset '{}' is stored as {}, not an IEEE 754 float16/32/64 layout",
                  path, name, describe_type(type));
    return size <= 4 ? StoredType{DType::f32, H5T_NATIVE_FLOAT, size, false}
                     : StoredType{DType::f64, H5T_NATIVE_DOUBLE, size, false};
  }
  if (cls == H5T_INTEGER) {
    MOEGRAD_CHECK(plain_integer(type), "hdf5", "'{}': dataset '{}' is stored as {}, not a plain integer layout", path,
                  name, describe_type(type));
    const bool u8 = size == 1 && H5Tget_sign(type) == H5T_SGN_NONE;
    return u8 ? StoredType{DType::u8, H5T_NATIVE_UINT8, size, false} : StoredType{DType::i64, H5T_NATIVE_INT64, size, false};
  }
  if (cls == H5T_ENUM) return {DType::i64, -1, size, true};
  fail("hdf5", "'{}': dataset '{}' has type {}; only float, integer and bool datasets become tensors", path, name,
       class_name(cls));
}

// The number of elements of `shape`, checked so that numel * element_size bytes fits in an
// int64: "[hdf5] 'f.h5': dataset '/x' of shape (268435456, 268435456, 64) is too large".
std::int64_t checked_numel(const Shape& shape, std::size_t element_size, const std::string& path,
                           const std::string& name) {
  std::int64_t n = 1;
  bool zero = false;
  for (std::int64_t d : shape) zero = zero || d == 0;
  if (zero) return 0;
  const auto limit = static_cast<std::int64_t>(INT64_MAX / static_cast<std::int64_t>(std::max<std::size_t>(element_size, 1)));
  for (std::int64_t d : shape) {
    if (d > limit / n)
      fail("hdf5", "'{}': dataset '{}' of shape {} is too large ({}-byte elements; more than 2^63 bytes)", path, name,
           core::shape_str(shape), element_size);
    n *= d;
  }
  return n;
}

// The data of a non-empty dataset must all be in the file: contiguous storage of exactly
// numel * element_size bytes, or every chunk of a chunked one. A dataset that was declared but
// never written (or whose chunk index lost entries) would otherwise read back as fill values.
void check_storage(hid_t file, hid_t ds, const Shape& shape, std::size_t element_size, bool strict, const std::string& path,
                   const std::string& name, const std::string& what) {
  Handle dcpl = checked(H5Dget_create_plist(ds), H5Pclose, what);
  const H5D_layout_t layout = H5Pget_layout(dcpl);
  const std::uint64_t numel = static_cast<std::uint64_t>(core::shape_numel(shape));
  hsize_t file_size = 0;
  check(H5Fget_filesize(file, &file_size), what);
  if (layout == H5D_CONTIGUOUS) {
    H5D_space_status_t status{};
    check(H5Dget_space_status(ds, &status), what);
    const hsize_t stored = H5Dget_storage_size(ds);
    const std::uint64_t want = numel * element_size;
    if (status != H5D_SPACE_STATUS_ALLOCATED || stored != want)
      fail("hdf5", "'{}': dataset '{}' declares shape {} ({} bytes) but the file holds {} bytes of it{}", path, name,
           core::shape_str(shape), want, status == H5D_SPACE_STATUS_ALLOCATED ? stored : 0,
           status == H5D_SPACE_STATUS_ALLOCATED ? "" : " (never written)");
    const haddr_t at = H5Dget_offset(ds);
    H5Eclear2(H5E_DEFAULT);
    if (at == HADDR_UNDEF || at > file_size || want > file_size - at)
      fail("hdf5", "'{}': dataset '{}' declares {} bytes at offset {}, past the end of the file ({} bytes)", path, name,
           want, at, file_size);
  } else if (layout == H5D_CHUNKED) {
    const int rank = static_cast<int>(shape.size());
    std::vector<hsize_t> chunk(shape.size());
    MOEGRAD_CHECK(H5Pget_chunk(dcpl, rank, chunk.data()) == rank, "hdf5", "{}: unreadable chunk layout", what);
    Handle space = checked(H5Dget_space(ds), H5Sclose, what);
    std::vector<hsize_t> max_dims(shape.size());
    check(H5Sget_simple_extent_dims(space, nullptr, max_dims.data()), what);
    std::uint64_t chunk_elements = 1;
    for (std::size_t i = 0; i < shape.size(); ++i) {
      // HDF5 sizes its buffers by the chunk: a chunk larger than a fixed dimension is damage.
      if (chunk[i] == 0 || (max_dims[i] != H5S_UNLIMITED && chunk[i] > max_dims[i]))
        fail("hdf5", "'{}': dataset '{}' of shape {} has chunks of shape {}, which do not fit it", path, name,
             core::shape_str(shape), core::shape_str(Shape(chunk.begin(), chunk.end())));
      chunk_elements *= chunk[i];
    }
    if (strict) {
      std::vector<hsize_t> dims(shape.begin(), shape.end());
      const bool written_so = chunk == chunk_dims(dims, element_size) && H5Pget_nfilters(dcpl) == 1 &&
                              H5Pget_filter2(dcpl, 0, nullptr, nullptr, nullptr, 0, nullptr, nullptr) == H5Z_FILTER_FLETCHER32;
      H5Eclear2(H5E_DEFAULT);
      if (!written_so)
        fail("hdf5", "'{}': dataset '{}' of shape {} has chunks of shape {} or filters other than the writer's", path,
             name, core::shape_str(shape), core::shape_str(Shape(chunk.begin(), chunk.end())));
    }
    std::uint64_t want = 1;
    for (std::size_t i = 0; i < shape.size(); ++i) {
      const std::uint64_t per_dim = (static_cast<std::uint64_t>(shape[i]) + chunk[i] - 1) / chunk[i];
      want = per_dim > UINT64_MAX / want ? UINT64_MAX : want * per_dim;
    }
    hsize_t have = 0;
    check(H5Dget_num_chunks(ds, space, &have), what);
    if (have != want)
      fail("hdf5", "'{}': dataset '{}' of shape {} has {} of its {} chunks in the file{}", path, name,
           core::shape_str(shape), have, want, have == 0 ? " (never written)" : "");
    if (strict) {  // each chunk: its elements and Fletcher32's 4 bytes, unfiltered-mask clear
      for (hsize_t i = 0; i < have; ++i) {
        unsigned mask = 0;
        haddr_t addr = 0;
        hsize_t size = 0;
        check(H5Dget_chunk_info(ds, space, i, nullptr, &mask, &addr, &size), what);
        if (mask != 0 || size != chunk_elements * element_size + 4 || addr == HADDR_UNDEF || addr > file_size ||
            size > file_size - addr)
          fail("hdf5", "'{}': dataset '{}': chunk {} is stored as {} bytes at {} (filter mask {}), expected {} bytes", path,
               name, i, size, addr, mask, chunk_elements * element_size + 4);
      }
    }
  } else if (layout == H5D_COMPACT) {  // the data lives in the object header: its size must match
    const hsize_t stored = H5Dget_storage_size(ds);
    const std::uint64_t want = numel * element_size;
    if (stored != want)
      fail("hdf5", "'{}': dataset '{}' declares shape {} ({} bytes) but the file holds {} bytes of it", path, name,
           core::shape_str(shape), want, stored);
  } else {
    fail("hdf5", "'{}': dataset '{}' has an unknown storage layout ({})", path, name, static_cast<int>(layout));
  }
}

// A dataset's crc64 attribute (an unsigned 64-bit scalar), nullopt when there is none.
std::optional<std::uint64_t> read_crc_attribute(hid_t ds, const std::string& path, const std::string& name,
                                                const std::string& what) {
  if (check(H5Aexists(ds, kCrcAttribute), what) == 0) return std::nullopt;
  Handle attr = checked(H5Aopen(ds, kCrcAttribute, H5P_DEFAULT), H5Aclose, what);
  Handle type = checked(H5Aget_type(attr), H5Tclose, what);
  Handle space = checked(H5Aget_space(attr), H5Sclose, what);
  MOEGRAD_CHECK(H5Tequal(type, H5T_STD_U64LE) > 0 && H5Sget_simple_extent_npoints(space) == 1, "hdf5",
                "'{}': dataset '{}' has a '{}' attribute that is not one uint64 (stored as {})", path, name,
                kCrcAttribute, describe_type(type));
  std::uint64_t v = 0;
  check(H5Aread(attr, H5T_NATIVE_UINT64, &v), what);
  return v;
}

}  // namespace moegrad::h5::detail
