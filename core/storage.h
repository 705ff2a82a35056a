// A block of memory on one device, shared by every tensor view of it.
#pragma once
#include <cstddef>
#include <memory>

#include "core/device.h"

namespace moegrad::core {

class Storage {
 public:
  Storage(std::size_t nbytes, Device device);  // uninitialised; 64-byte aligned on CPU (cached)
  ~Storage();
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;

  void* data() const { return data_; }
  std::size_t nbytes() const { return nbytes_; }
  Device device() const { return device_; }

 private:
  void* data_ = nullptr;
  std::size_t nbytes_ = 0;
  Device device_;
};

}  // namespace moegrad::core
