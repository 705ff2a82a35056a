// Tensor: a cheap handle (shared storage, shape, strides in elements, offset, dtype, device).
// Views share storage; all ops are free functions in core/ops.h.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/device.h"
#include "core/dtype.h"
#include "core/error.h"
#include "core/shape.h"
#include "core/storage.h"

namespace moegrad::core {

class Tensor {
 public:
  Tensor() = default;  // undefined tensor (e.g. "no gradient")
  Tensor(std::shared_ptr<Storage> storage, Shape shape, Shape strides, std::int64_t offset,
         DType dtype);

  bool defined() const { return storage_ != nullptr; }
  const Shape& shape() const { return shape_; }
  const Shape& strides() const { return strides_; }
  std::int64_t size(std::int64_t dim) const;    // negative dims count from the end
  std::int64_t stride(std::int64_t dim) const;
  std::int64_t dim() const { return static_cast<std::int64_t>(shape_.size()); }
  std::int64_t numel() const { return numel_; }
  std::int64_t offset() const { return offset_; }
  DType dtype() const { return dtype_; }
  Device device() const;
  bool is_contiguous() const;
  const std::shared_ptr<Storage>& storage() const { return storage_; }
  // True when no other handle shares the storage and this one covers all of it, contiguously:
  // the storage can then be taken over or written in place without anyone else seeing it.
  bool owns_whole_storage() const;

  // Pointer to element 0 of this view; throws if T is not the tensor's dtype.
  template <class T> T* data() const {
    check_data_type(dtype_of<T>());
    return static_cast<T*>(storage_->data()) + offset_;
  }
  void* raw_data() const;  // element 0 of this view, any dtype

  // Host access (copies from the device if needed).
  template <class T> T item() const;                 // numel must be 1; converts to T
  template <class T> std::vector<T> to_vector() const;  // row-major, converts to T
  std::string to_string() const;                     // shape, dtype and values (abbreviated)

 private:
  void check_data_type(DType want) const;

  std::shared_ptr<Storage> storage_;
  Shape shape_;
  Shape strides_;
  std::int64_t offset_ = 0;
  std::int64_t numel_ = 0;
  DType dtype_ = DType::f32;
};

// Describes a tensor for error messages: "f32(2, 3)".
std::string describe(const Tensor& t);

struct TensorOptions {
  DType dtype = DType::f32;
  Device device = Device::cpu();
};

Tensor empty(const Shape& shape, TensorOptions opt = {});
// empty() for `op`: every tensor's memory comes from here, so every size error and failed
// allocation names the op, dtype and shape, before any memory is asked for:
//   "[zeros] shape (9223372036854775807, 16) is too large: its element count overflows int64"
//   "[cat] f64 shape (2305843009213693952, 4) is too large: its byte count overflows int64"
//   "[randn] cannot allocate 128000000000 bytes (119.2 GiB) for a f32 tensor of shape
//    (1000000000, 32) on cpu: more than the memory limit of ..." (core/cpu/memory_limit.h)
Tensor empty_for(const char* op, const Shape& shape, TensorOptions opt = {});

}  // namespace moegrad::core
