// What this build of moegrad contains, for `moegrad info` and bug reports.
#pragma once
#include <string>

#include "core/device.h"

namespace moegrad::core {

struct BuildInfo {
  std::string version;
  bool cuda_built = false;  // CUDA sources compiled in
  int cuda_devices = 0;     // devices visible now (0 without CUDA)
  int omp_threads = 1;      // OpenMP threads for CPU loops
  std::string blas;         // CPU BLAS and its configuration (f64 GEMMs; f32 ones without oneDNN)
  std::string gemm;         // the f32 CPU GEMM engine, why, and its library (cpu/gemm_engine.h)
  std::string gemm_bf16;    // how the CPU's bf16 -> f32 GEMMs run (--precision bf16)
};

BuildInfo build_info();

// Why `device` cannot be used by this process ("no CUDA device is present: this build has no CUDA
// backend ...", "no CUDA device is present", "only 1 CUDA device is present (cuda:0)"), or an
// empty string when it can; the CPU always can. Front ends check it before any work.
std::string device_unavailable(Device device);

}  // namespace moegrad::core
