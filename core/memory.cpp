// The per-device controls of core/memory.h, through each device's DeviceRuntime.
#include "core/memory.h"

#include <atomic>

#include "core/backend.h"
#include "core/device_runtime.h"

namespace moegrad::core {
namespace {
std::atomic<bool> g_allow_tf32{false};  // read by the cuBLAS GEMMs (core/cuda/gemm.cpp)
}  // namespace

MemoryStats memory_stats(Device device) {
  return backend<DeviceRuntime>("memory_stats", device).memory_stats(device.index);
}
void reset_peak_memory(Device device) {
  backend<DeviceRuntime>("reset_peak_memory", device).reset_peak_memory(device.index);
}
void empty_cache(Device device) { backend<DeviceRuntime>("empty_cache", device).empty_cache(device.index); }
void synchronize(Device device) { backend<DeviceRuntime>("synchronize", device).synchronize(device.index); }
std::int64_t host_wait_count(Device device) {
  return backend<DeviceRuntime>("host_wait_count", device).host_wait_count(device.index);
}
void set_allow_tf32(bool allow) { g_allow_tf32 = allow; }
bool allow_tf32() { return g_allow_tf32; }

}  // namespace moegrad::core
