#include "core/storage.h"

#include "core/cpu/allocator.h"
#include "core/cuda/runtime.h"

namespace moegrad::core {

Storage::Storage(std::size_t nbytes, Device device) : nbytes_(nbytes), device_(device) {
  data_ = device.is_cuda() ? cuda::device_alloc(nbytes, device.index) : cpu::allocate(nbytes);
}

Storage::~Storage() {
  if (device_.is_cuda())
    cuda::device_free(data_, nbytes_, device_.index);
  else
    cpu::deallocate(data_, nbytes_);
}

}  // namespace moegrad::core
