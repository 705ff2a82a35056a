#include "core/storage.h"

#include <fmt/format.h>

#include "core/allocation.h"
#include "core/checked_math.h"  // bytes_str
#include "core/backend.h"
#include "core/device_runtime.h"

namespace moegrad::core {

OutOfMemory::OutOfMemory(std::size_t bytes, const std::string& device, std::string reason)
    : Error(fmt::format("[alloc] cannot allocate {} on {}: {}", bytes_str(bytes), device, reason)),
      bytes_(bytes),
      reason_(std::move(reason)) {}

Storage::Storage(std::size_t nbytes, Device device) : nbytes_(nbytes), device_(device) {
  data_ = backend<DeviceRuntime>("alloc", device).allocate(nbytes, device.index);
}

Storage::~Storage() { backend<DeviceRuntime>("free", device_).deallocate(data_, nbytes_, device_.index); }

}  // namespace moegrad::core
