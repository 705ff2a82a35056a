#include "core/tensor.h"

#include <fmt/format.h>

#include <cmath>
#include <new>

#include "core/allocation.h"
#include "core/checked_math.h"

namespace moegrad::core {

Tensor::Tensor(std::shared_ptr<Storage> storage, Shape shape, Shape strides, std::int64_t offset,
               DType dtype)
    : storage_(std::move(storage)),
      shape_(std::move(shape)),
      strides_(std::move(strides)),
      offset_(offset),
      numel_(shape_numel(shape_, "tensor")),  // sizes >= 0, count within int64
      dtype_(dtype) {
  MOEGRAD_CHECK(shape_.size() == strides_.size(), "tensor", "shape {} and strides {} differ in rank",
                shape_str(shape_), shape_str(strides_));
}

std::int64_t Tensor::size(std::int64_t dim) const { return shape_[normalize_dim("size", dim, shape_)]; }
std::int64_t Tensor::stride(std::int64_t dim) const {
  return strides_[normalize_dim("stride", dim, shape_)];
}
Device Tensor::device() const { return storage_ ? storage_->device() : Device::cpu(); }

bool Tensor::is_contiguous() const {
  std::int64_t expected = 1;
  for (std::size_t i = shape_.size(); i-- > 0;) {
    if (shape_[i] == 1) continue;
    if (strides_[i] != expected) return false;
    expected *= shape_[i];
  }
  return true;
}

bool Tensor::owns_whole_storage() const {
  return defined() && storage_.use_count() == 1 && offset_ == 0 && is_contiguous() &&
         storage_->nbytes() == static_cast<std::size_t>(numel_) * dtype_size(dtype_);
}

void* Tensor::raw_data() const {
  MOEGRAD_CHECK(defined(), "data", "tensor is undefined");
  return static_cast<char*>(storage_->data()) + offset_ * static_cast<std::int64_t>(dtype_size(dtype_));
}

void Tensor::check_data_type(DType want) const {
  MOEGRAD_CHECK(defined(), "data", "tensor is undefined");
  MOEGRAD_CHECK(want == dtype_, "data", "asked for {} data of a {} tensor", dtype_name(want),
                describe(*this));
}

Tensor empty_for(const char* op, const Shape& shape, TensorOptions opt) {
  const std::int64_t numel = shape_numel(shape, op);  // sizes >= 0, count within int64
  Shape strides = contiguous_strides(shape, op);
  std::int64_t nbytes = 0;
  if (!mul_fits(numel, static_cast<std::int64_t>(dtype_size(opt.dtype)), nbytes))
    fail(op, "{} shape {} is too large: its byte count overflows int64", dtype_name(opt.dtype), shape_str(shape));
  std::shared_ptr<Storage> storage;
  try {
    storage = std::make_shared<Storage>(static_cast<std::size_t>(nbytes), opt.device);
  } catch (const OutOfMemory& e) {
    fail(op, "cannot allocate {} for a {} tensor of shape {} on {}: {}", bytes_str(static_cast<std::uint64_t>(nbytes)),
         dtype_name(opt.dtype), shape_str(shape), opt.device.str(), e.reason());
  } catch (const std::bad_alloc&) {  // the shared_ptr's control block
    fail(op, "cannot allocate {} for a {} tensor of shape {} on {}: out of memory",
         bytes_str(static_cast<std::uint64_t>(nbytes)), dtype_name(opt.dtype), shape_str(shape), opt.device.str());
  }
  return Tensor(std::move(storage), shape, std::move(strides), 0, opt.dtype);
}

Tensor empty(const Shape& shape, TensorOptions opt) { return empty_for("empty", shape, opt); }

std::string describe(const Tensor& t) {
  if (!t.defined()) return "undefined";
  return fmt::format("{}{}", dtype_name(t.dtype()), shape_str(t.shape()));
}

}  // namespace moegrad::core
