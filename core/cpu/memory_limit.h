// How much memory live CPU tensors may hold together, checked by the allocator before it calls
// malloc or mmap: with Linux overcommit a request larger than the machine succeeds and then
// crawls (or gets the process killed) as its pages are touched, and under AddressSanitizer a huge
// malloc aborts. So a single request, or live bytes plus a request, above the limit fails at once:
//   [randn] cannot allocate 128000000000 bytes (119.2 GiB) for a f32 tensor of shape
//   (1000000000, 32) on cpu: more than the memory limit of 23.5 GiB (physical memory + swap; ...)
// The limit: MOEGRAD_CPU_MEMORY_LIMIT (bytes, or with a K/M/G/T suffix: 8G) when set, else the
// machine's physical memory + swap, or the cgroup's memory limit + swap where that is lower.
#pragma once
#include <cstdint>
#include <string>

namespace moegrad::core::cpu {

std::int64_t memory_limit();        // bytes
std::string memory_limit_source();  // "physical memory + swap", "set by MOEGRAD_CPU_MEMORY_LIMIT", ...
// > 0: use this many bytes from now on (tests); 0: back to the environment / machine default.
void set_memory_limit(std::int64_t bytes);

// Why a request of `bytes` with `live` bytes already in tensors does not fit, or "" when it does.
std::string over_memory_limit(std::uint64_t bytes, std::uint64_t live);

}  // namespace moegrad::core::cpu
