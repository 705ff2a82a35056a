// CPU-only build: the CUDA runtime entry points exist and explain that CUDA was not built.
#include "core/cuda/device_error.h"
#include "core/cuda/runtime.h"
#include "core/error.h"

namespace moegrad::core::cuda {
namespace {
[[noreturn]] void not_built(const char* what, int device) {
  fail("cuda", "{} on cuda:{}: moegrad was built without CUDA", what, device);
}
}  // namespace

bool available() { return false; }
int device_count() { return 0; }
void* device_alloc(std::size_t nbytes, int device) {
  fail("cuda", "cannot allocate {} bytes on cuda:{}: moegrad was built without CUDA", nbytes,
       device);
}
void device_free(void*, std::size_t, int) noexcept {}
MemoryStats memory_stats(int device) { not_built("memory statistics", device); }
void reset_peak_memory(int device) { not_built("reset_peak_memory", device); }
void empty_cache(int device) { not_built("empty_cache", device); }
void copy_bytes(void*, const void*, std::size_t, int) {
  fail("cuda", "copy to or from a CUDA device: moegrad was built without CUDA");
}
void synchronize(int device) { not_built("synchronize", device); }
std::int64_t host_wait_count(int device) { not_built("host_wait_count", device); }
void set_allow_tf32(bool) {}
bool allow_tf32() { return false; }
DeviceError* device_error_slot(int device) { not_built("device errors", device); }
void raise_device_error(int) {}

}  // namespace moegrad::core::cuda
