#include "core/storage.h"

#include <cstdlib>
#include <new>

#include "core/cuda/runtime.h"
#include "core/error.h"

namespace moegrad::core {

Storage::Storage(std::size_t nbytes, Device device) : nbytes_(nbytes), device_(device) {
  if (device.is_cuda()) {
    data_ = cuda::device_alloc(nbytes, device.index);
    return;
  }
  constexpr std::size_t kAlign = 64;  // cache line / AVX-512
  const std::size_t rounded = (nbytes + kAlign - 1) / kAlign * kAlign;
  data_ = std::aligned_alloc(kAlign, rounded == 0 ? kAlign : rounded);
  if (!data_) fail("alloc", "out of memory allocating {} bytes on cpu", nbytes);
}

Storage::~Storage() {
  if (device_.is_cuda())
    cuda::device_free(data_, device_.index);
  else
    std::free(data_);
}

}  // namespace moegrad::core
