// CPU-only build: the CUDA entry points exist and explain that CUDA was not built.
#include "core/cuda/runtime.h"
#include "core/error.h"

namespace moegrad::core::cuda {

bool available() { return false; }
int device_count() { return 0; }
void* device_alloc(std::size_t nbytes, int device) {
  fail("cuda", "cannot allocate {} bytes on cuda:{}: moegrad was built without CUDA", nbytes,
       device);
}
void device_free(void*, int) noexcept {}
void copy_bytes(void*, const void*, std::size_t) {
  fail("cuda", "copy to or from a CUDA device: moegrad was built without CUDA");
}

}  // namespace moegrad::core::cuda
