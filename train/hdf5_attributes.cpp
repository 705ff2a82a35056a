// File's root attributes: strings (variable or fixed length), numbers, listing and removal.
#include <hdf5.h>

#include <algorithm>
#include <optional>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "train/hdf5_detail.h"

namespace moegrad::h5 {

using namespace detail;

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

}  // namespace moegrad::h5
