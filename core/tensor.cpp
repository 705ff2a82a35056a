#include "core/tensor.h"

#include <fmt/format.h>

#include <cmath>

#include "core/ops/creation.h"

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

template <class T> std::vector<T> Tensor::to_vector() const {
  MOEGRAD_CHECK(defined(), "to_vector", "tensor is undefined");
  const Tensor host = contiguous(to_device(*this, Device::cpu()));
  std::vector<T> out(static_cast<std::size_t>(numel_));
  visit_dtype(dtype_, "to_vector", [&](auto tag) {
    using S = typename decltype(tag)::type;
    const S* src = host.data<S>();
    for (std::int64_t i = 0; i < numel_; ++i) out[i] = static_cast<T>(src[i]);
  });
  return out;
}

template <class T> T Tensor::item() const {
  MOEGRAD_CHECK(numel_ == 1, "item", "needs exactly one element, got {}", describe(*this));
  return to_vector<T>()[0];
}

#define MOEGRAD_INSTANTIATE(T)                        \
  template std::vector<T> Tensor::to_vector<T>() const; \
  template T Tensor::item<T>() const;
MOEGRAD_INSTANTIATE(float)
MOEGRAD_INSTANTIATE(double)
MOEGRAD_INSTANTIATE(std::int64_t)
MOEGRAD_INSTANTIATE(bool)
MOEGRAD_INSTANTIATE(std::uint8_t)
MOEGRAD_INSTANTIATE(int)
#undef MOEGRAD_INSTANTIATE

std::string Tensor::to_string() const {
  if (!defined()) return "Tensor(undefined)";
  std::string out = fmt::format("Tensor({}, {}, {}", shape_str(shape_), dtype_name(dtype_), device().str());
  const auto values = to_vector<double>();
  constexpr std::size_t kShown = 16;
  out += ", [";
  for (std::size_t i = 0; i < values.size() && i < kShown; ++i)
    out += (i ? ", " : "") + fmt::format("{:.6g}", values[i]);
  if (values.size() > kShown) out += fmt::format(", ... ({} values)", values.size());
  return out + "])";
}

std::string describe(const Tensor& t) {
  if (!t.defined()) return "undefined";
  return fmt::format("{}{}", dtype_name(t.dtype()), shape_str(t.shape()));
}

}  // namespace moegrad::core
