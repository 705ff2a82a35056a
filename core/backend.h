// The one place a device is mapped to the code that runs on it. A kernel family
// (core/kernels/<family>.h) is a table of function pointers declared once, with one table per
// backend: `Family::cpu`, defined in core/cpu/, and `Family::cuda`, defined in core/cuda/ and
// only in a CUDA build. The ops (core/ops/) validate, plan and allocate, then call
// `backend<Family>(op, device).kernel(...)`; none of them branches on the device. In a CPU-only
// build every CUDA device takes one generic path: "[cuda] topk on cuda:0: moegrad was built
// without CUDA" (no CUDA tensor can exist there: the first to fail is its allocation).
#pragma once
#include "core/device.h"
#include "core/error.h"

namespace moegrad::core {

[[noreturn]] inline void cuda_not_built(const char* op, Device device) {
  fail("cuda", "{} on {}: moegrad was built without CUDA", op, device.str());
}

template <class Family>
const Family& backend([[maybe_unused]] const char* op, Device device) {
  if (!device.is_cuda()) return Family::cpu;
#ifdef MOEGRAD_WITH_CUDA
  return Family::cuda;
#else
  cuda_not_built(op, device);
#endif
}

// The same choice for a family of templates whose instantiations are open (the elementwise map:
// one kernel per functor, so no table): calls on_cpu(0) or on_cuda(0), generic lambdas. Without
// CUDA on_cuda is never instantiated, so it may name kernels that are not built.
template <class OnCpu, class OnCuda>
void run_on([[maybe_unused]] const char* op, Device device, OnCpu&& on_cpu, [[maybe_unused]] OnCuda&& on_cuda) {
  if (!device.is_cuda()) {
    on_cpu(0);
    return;
  }
#ifdef MOEGRAD_WITH_CUDA
  on_cuda(0);
#else
  cuda_not_built(op, device);
#endif
}

}  // namespace moegrad::core
