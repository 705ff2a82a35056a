#include "core/build_info.h"

#include <cblas.h>
#include <fmt/format.h>
#include <omp.h>

#include "core/cpu/gemm_engine.h"
#include "core/cuda/runtime.h"

extern "C" char* openblas_get_config(void);

namespace moegrad::core {

BuildInfo build_info() {
  BuildInfo info;
  info.version = MOEGRAD_VERSION;
#ifdef MOEGRAD_WITH_CUDA
  info.cuda_built = true;
  info.cuda_devices = cuda::device_count();
#endif
  info.omp_threads = omp_get_max_threads();
  info.blas = std::string("OpenBLAS ") + openblas_get_config();
  info.gemm = cpu::gemm_engine_summary();
  info.gemm_bf16 = cpu::bf16_gemm_summary();
  return info;
}

std::string device_unavailable(Device device) {
  if (device.is_cpu()) return "";
  const BuildInfo info = build_info();
  if (!info.cuda_built)
    return "no CUDA device is present: this build has no CUDA backend (configured without nvcc or with "
           "-DMOEGRAD_CUDA=OFF; see moegrad info)";
  if (info.cuda_devices == 0) return "no CUDA device is present";
  if (device.index >= info.cuda_devices)
    return fmt::format("only {} CUDA device{} present (cuda:0{})", info.cuda_devices,
                       info.cuda_devices == 1 ? " is" : "s are",
                       info.cuda_devices == 1 ? "" : fmt::format(" to cuda:{}", info.cuda_devices - 1));
  return "";
}

}  // namespace moegrad::core
