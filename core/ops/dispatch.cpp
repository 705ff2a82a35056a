#include "core/ops/dispatch.h"

namespace moegrad::core {

void check_defined(const char* op, const Tensor& t, const char* what) {
  MOEGRAD_CHECK(t.defined(), op, "{} tensor is undefined", what);
}

Device common_device(const char* op, std::initializer_list<const Tensor*> tensors) {
  const Tensor* first = nullptr;
  for (const Tensor* t : tensors) {
    check_defined(op, *t);
    if (!first) first = t;
    MOEGRAD_CHECK(t->device() == first->device(), op, "tensors on different devices: {} {} vs {} {}",
                  describe(*first), first->device().str(), describe(*t), t->device().str());
  }
  return first ? first->device() : Device::cpu();
}

DType common_dtype(const char* op, std::initializer_list<const Tensor*> tensors) {
  const Tensor* first = nullptr;
  for (const Tensor* t : tensors) {
    check_defined(op, *t);
    if (!first) first = t;
    MOEGRAD_CHECK(t->dtype() == first->dtype(), op, "dtype mismatch: {} vs {}", describe(*first),
                  describe(*t));
  }
  return first ? first->dtype() : DType::f32;
}

}  // namespace moegrad::core
