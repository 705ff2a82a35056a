// Per-device runtime controls, the same calls for every device: memory statistics of the
// caching allocators, waiting for queued work, and the TF32 switch for CUDA f32 GEMMs.
#pragma once
#include "core/allocation.h"  // MemoryStats
#include "core/device.h"

namespace moegrad::core {

// allocated (live tensors), reserved (allocated + cached free blocks), peak_allocated.
MemoryStats memory_stats(Device device);
void reset_peak_memory(Device device);
void empty_cache(Device device);  // returns cached free blocks to the system / driver
// Waits until the device has finished the work queued on it (no-op on the CPU) and raises any
// error a kernel recorded (a bad index found on the GPU surfaces here or at the next copy to
// the host).
void synchronize(Device device);
// How many times the host has waited for the device so far (0 on the CPU): each copy to the
// host, item(), to_vector() and synchronize() counts one. Tests use it to check that a forward
// pass never waits.
std::int64_t host_wait_count(Device device);
// Off by default: f32 matmuls on CUDA give FP32 results. On: cuBLAS may use TF32 tensor cores
// (about 10 mantissa bits in the products), like torch.backends.cuda.matmul.allow_tf32.
void set_allow_tf32(bool allow);
bool allow_tf32();

}  // namespace moegrad::core
