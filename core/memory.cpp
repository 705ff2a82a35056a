#include "core/memory.h"

#include "core/cpu/allocator.h"
#include "core/cuda/runtime.h"

namespace moegrad::core {

MemoryStats memory_stats(Device device) {
  return device.is_cuda() ? cuda::memory_stats(device.index) : cpu::memory_stats();
}
void reset_peak_memory(Device device) {
  if (device.is_cuda())
    cuda::reset_peak_memory(device.index);
  else
    cpu::reset_peak_memory();
}
void empty_cache(Device device) {
  if (device.is_cuda())
    cuda::empty_cache(device.index);
  else
    cpu::empty_cache();
}
void synchronize(Device device) {
  if (device.is_cuda()) cuda::synchronize(device.index);
}
std::int64_t host_wait_count(Device device) { return device.is_cuda() ? cuda::host_wait_count(device.index) : 0; }
void set_allow_tf32(bool allow) { cuda::set_allow_tf32(allow); }
bool allow_tf32() { return cuda::allow_tf32(); }

}  // namespace moegrad::core
