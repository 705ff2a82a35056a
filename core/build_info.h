// What this build of moegrad contains, for `moegrad info` and bug reports.
#pragma once
#include <string>

namespace moegrad::core {

struct BuildInfo {
  std::string version;
  bool cuda_built = false;  // CUDA sources compiled in
  int cuda_devices = 0;     // devices visible now (0 without CUDA)
  int omp_threads = 1;      // OpenMP threads for CPU loops
  std::string blas;         // CPU BLAS and its configuration
};

BuildInfo build_info();

}  // namespace moegrad::core
