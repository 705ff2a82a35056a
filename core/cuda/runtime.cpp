// CUDA runtime calls (host code): devices, streams, the caching allocator, copies and the
// deferred kernel errors. Errors become exceptions with the call and file:line.
#include "core/cuda/runtime.h"

#include <cuda_runtime.h>
#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <map>
#include <memory>
#include <mutex>
#include <vector>

#include "core/checked_math.h"
#include "core/cuda/check.h"
#include "core/cuda/device_error.h"
#include "core/device_runtime.h"

namespace moegrad::core::cuda {
namespace {

constexpr int kMaxDevices = 16;

// Small blocks round to 512 bytes, large ones to 2 MiB, so one size class serves the slightly
// different row counts an MoE layer allocates from step to step.
std::size_t size_class(std::size_t n) {
  constexpr std::size_t kSmall = 512, kLarge = std::size_t{2} << 20, kLargeFrom = std::size_t{1} << 20;
  if (n == 0) n = 1;
  if (n < kLargeFrom) return (n + kSmall - 1) / kSmall * kSmall;
  return (n + kLarge - 1) / kLarge * kLarge;
}

// Everything the runtime keeps per device, created on first use.
struct DeviceState {
  std::mutex mutex;
  cudaStream_t stream = nullptr;
  DeviceError* error_host = nullptr;    // mapped pinned memory
  DeviceError* error_device = nullptr;  // the same memory as the device sees it
  std::multimap<std::size_t, void*> free_blocks;  // size class -> block
  std::size_t cached = 0;
  MemoryStats stats;
  std::atomic<std::int64_t> host_waits{0};  // times the host waited for the stream
};

DeviceState& state(int device) {
  static DeviceState* states = new DeviceState[kMaxDevices];  // never destroyed (static tensors)
  MOEGRAD_CHECK(device >= 0 && device < std::min(kMaxDevices, device_count()), "cuda",
                "no device cuda:{} ({} present)", device, device_count());
  return states[device];
}

void set_device(int device) { MOEGRAD_CUDA_CHECK(cudaSetDevice(device)); }

void release_cache_locked(DeviceState& s) {
  for (auto& [cls, ptr] : s.free_blocks) cudaFree(ptr);
  s.free_blocks.clear();
  s.cached = 0;
}


}  // namespace

int device_count() {
  static const int n = [] {
    int count = 0;
    if (cudaGetDeviceCount(&count) != cudaSuccess) {
      cudaGetLastError();  // clear the sticky "no device" error
      return 0;
    }
    return count;
  }();
  return n;
}

bool available() { return device_count() > 0; }

cudaStream_t stream(int device) {
  DeviceState& s = state(device);
  set_device(device);
  std::lock_guard<std::mutex> lock(s.mutex);
  if (!s.stream) MOEGRAD_CUDA_CHECK(cudaStreamCreateWithFlags(&s.stream, cudaStreamNonBlocking));
  return s.stream;
}

void* device_alloc(std::size_t nbytes, int device) {
  DeviceState& s = state(device);
  const std::size_t cls = size_class(nbytes);
  set_device(device);
  std::lock_guard<std::mutex> lock(s.mutex);
  auto note = [&s, cls] {
    s.stats.allocated += static_cast<std::int64_t>(cls);
    s.stats.peak_allocated = std::max(s.stats.peak_allocated, s.stats.allocated);
  };
  if (auto it = s.free_blocks.find(cls); it != s.free_blocks.end()) {
    void* p = it->second;
    s.free_blocks.erase(it);
    s.cached -= cls;
    ++s.stats.cache_hits;
    note();
    return p;
  }
  ++s.stats.cache_misses;
  void* p = nullptr;
  if (cudaMalloc(&p, cls) != cudaSuccess) {
    cudaGetLastError();
    // Cached blocks may be in use by queued kernels only until the stream drains.
    if (s.stream) cudaStreamSynchronize(s.stream);
    ++s.host_waits;
    release_cache_locked(s);
    const cudaError_t err = cudaMalloc(&p, cls);
    if (err != cudaSuccess) {
      cudaGetLastError();
      throw OutOfMemory(nbytes, fmt::format("cuda:{}", device),
                        fmt::format("cudaMalloc failed: {} ({} already in live tensors there)",
                                    cudaGetErrorString(err), bytes_str(static_cast<std::uint64_t>(s.stats.allocated))));
    }
  }
  note();
  return p;
}

void device_free(void* ptr, std::size_t nbytes, int device) noexcept {
  if (!ptr) return;
  try {
    DeviceState& s = state(device);
    const std::size_t cls = size_class(nbytes);
    std::lock_guard<std::mutex> lock(s.mutex);
    s.stats.allocated -= static_cast<std::int64_t>(cls);
    // One stream: any kernel that reuses the block is queued after those that used it.
    s.free_blocks.emplace(cls, ptr);
    s.cached += cls;
  } catch (...) {
    std::fprintf(stderr, "moegrad: could not return a block to the cuda:%d cache\n", device);
  }
}

MemoryStats memory_stats(int device) {
  DeviceState& s = state(device);
  std::lock_guard<std::mutex> lock(s.mutex);
  MemoryStats out = s.stats;
  out.reserved = out.allocated + static_cast<std::int64_t>(s.cached);
  return out;
}

void reset_peak_memory(int device) {
  DeviceState& s = state(device);
  std::lock_guard<std::mutex> lock(s.mutex);
  s.stats.peak_allocated = s.stats.allocated;
}

void empty_cache(int device) {
  DeviceState& s = state(device);
  set_device(device);
  if (s.stream) MOEGRAD_CUDA_CHECK(cudaStreamSynchronize(s.stream));
  ++s.host_waits;
  std::lock_guard<std::mutex> lock(s.mutex);
  release_cache_locked(s);
}

void copy_bytes(void* dst, const void* src, std::size_t nbytes, int device) {
  if (nbytes == 0) return;
  cudaStream_t st = stream(device);
  MOEGRAD_CUDA_CHECK(cudaMemcpyAsync(dst, src, nbytes, cudaMemcpyDefault, st));
  cudaPointerAttributes attr{};
  MOEGRAD_CUDA_CHECK(cudaPointerGetAttributes(&attr, dst));
  if (attr.type != cudaMemoryTypeDevice) synchronize(device);  // the host reads dst next
}

void synchronize(int device) {
  MOEGRAD_CUDA_CHECK(cudaStreamSynchronize(stream(device)));
  ++state(device).host_waits;
  raise_device_error(device);
}

DeviceError* device_error_slot(int device) {
  DeviceState& s = state(device);
  set_device(device);
  std::lock_guard<std::mutex> lock(s.mutex);
  if (!s.error_host) {
    void* host = nullptr;
    MOEGRAD_CUDA_CHECK(cudaHostAlloc(&host, sizeof(DeviceError), cudaHostAllocMapped));
    s.error_host = static_cast<DeviceError*>(host);
    *s.error_host = DeviceError{};
    void* dev = nullptr;
    MOEGRAD_CUDA_CHECK(cudaHostGetDevicePointer(&dev, host, 0));
    s.error_device = static_cast<DeviceError*>(dev);
  }
  return s.error_device;
}

void raise_device_error(int device) {
  DeviceState& s = state(device);
  DeviceError e;
  {
    std::lock_guard<std::mutex> lock(s.mutex);
    if (!s.error_host || s.error_host->flag == 0) return;
    e = *s.error_host;
    *s.error_host = DeviceError{};
  }
  const char* op = e.op ? e.op : "cuda";
  switch (e.kind) {
    case DeviceErrorKind::row_out_of_range:
      fail(op, "row index {} out of range [{}, {})", e.value, e.lo, e.hi);
    case DeviceErrorKind::row_repeated:
      fail(op, "row index {} appears twice", e.value);
    case DeviceErrorKind::expert_out_of_range:
      fail(op, "expert id {} out of range [0, {})", e.value, e.hi);
    case DeviceErrorKind::non_finite:
      fail(op, "{} contains NaN or Inf", e.what ? e.what : "a tensor");
    case DeviceErrorKind::class_out_of_range:
      fail(op, "class index {} out of range for num_classes {}", e.value, e.hi);
    default:
      fail(op, "index {} out of range for dim {} of size {}", e.value, e.lo, e.hi);
  }
}

std::int64_t host_wait_count(int device) { return state(device).host_waits.load(); }

}  // namespace moegrad::core::cuda

namespace moegrad::core {

const DeviceRuntime DeviceRuntime::cuda = {
    .allocate = cuda::device_alloc,
    .deallocate = cuda::device_free,
    .copy_bytes = cuda::copy_bytes,
    .memory_stats = cuda::memory_stats,
    .reset_peak_memory = cuda::reset_peak_memory,
    .empty_cache = cuda::empty_cache,
    .synchronize = cuda::synchronize,
    .host_wait_count = cuda::host_wait_count,
};

}  // namespace moegrad::core
