// A build without oneDNN (CMake did not find it, or -DMOEGRAD_ONEDNN=OFF): OpenBLAS is the only
// f32 GEMM engine. core/CMakeLists.txt compiles this file or gemm_engine_onednn.cpp.
#include "core/cpu/gemm_engine.h"

namespace moegrad::core::cpu {

const GemmEngine* onednn_gemm_engine() { return nullptr; }

bool onednn_has_avx512() { return false; }

bool onednn_has_avx2() { return false; }

}  // namespace moegrad::core::cpu
