#include "core/build_info.h"

#include <cblas.h>
#include <omp.h>

#include "core/cuda/runtime.h"

extern "C" char* openblas_get_config(void);

namespace moegrad::core {

BuildInfo build_info() {
  BuildInfo info;
  info.version = MOEGRAD_VERSION;
#ifdef MOEGRAD_WITH_CUDA
  info.cuda_built = true;
#endif
  info.cuda_devices = cuda::device_count();
  info.omp_threads = omp_get_max_threads();
  info.blas = std::string("OpenBLAS ") + openblas_get_config();
  return info;
}

}  // namespace moegrad::core
