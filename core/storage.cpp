#include "core/storage.h"

#include <fmt/format.h>

#include "core/allocation.h"
#include "core/checked_math.h"  // bytes_str
#include "core/cpu/allocator.h"
#include "core/cuda/runtime.h"

namespace moegrad::core {

OutOfMemory::OutOfMemory(std::size_t bytes, const std::string& device, std::string reason)
    : Error(fmt::format("[alloc] cannot allocate {} on {}: {}", bytes_str(bytes), device, reason)),
      bytes_(bytes),
      reason_(std::move(reason)) {}

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
