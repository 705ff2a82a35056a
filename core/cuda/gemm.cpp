// The CUDA GemmKernels tables (core/kernels/gemm.h) through cuBLAS: one handle per device, bound
// to the device's stream. Uniform offset steps (contiguous batches, or a broadcast operand with
// step 0) become one cublas<t>gemmStridedBatched call; other batches one call per product. f32
// uses TF32 tensor cores only when core::allow_tf32() (core/memory.h) is set; bf16 operands
// (GemmKernels<Bf16, float>) go through cublasGemmEx with FP32 accumulation.
#include "core/kernels/gemm.h"

#include <cublas_v2.h>

#include <climits>
#include <map>
#include <mutex>
#include <vector>

#include "core/cuda/check.h"
#include "core/cuda/runtime.h"
#include "core/memory.h"  // allow_tf32

#define MOEGRAD_CUBLAS_CHECK(call)                                                          \
  do {                                                                                      \
    const cublasStatus_t st_ = (call);                                                      \
    if (st_ != CUBLAS_STATUS_SUCCESS)                                                       \
      ::moegrad::fail("cublas", "{} failed: {} ({}:{})", #call, cublasGetStatusString(st_), \
                      __FILE__, __LINE__);                                                  \
  } while (0)

namespace moegrad::core::cuda {
namespace {

constexpr int kMaxDevices = 16;

// The device's handle, on its stream, with the math mode of allow_tf32().
cublasHandle_t handle(int device) {
  static std::mutex mutex;
  static cublasHandle_t handles[kMaxDevices] = {};
  cudaStream_t st = stream(device);  // also makes the device current
  std::lock_guard<std::mutex> lock(mutex);
  MOEGRAD_CHECK(device >= 0 && device < kMaxDevices, "cublas", "device index {} too large", device);
  cublasHandle_t& h = handles[device];
  if (!h) {
    MOEGRAD_CUBLAS_CHECK(cublasCreate(&h));
    MOEGRAD_CUBLAS_CHECK(cublasSetStream(h, st));
  }
  MOEGRAD_CUBLAS_CHECK(cublasSetMathMode(h, allow_tf32() ? CUBLAS_TF32_TENSOR_OP_MATH : CUBLAS_DEFAULT_MATH));
  return h;
}

cublasOperation_t op_of(bool trans) { return trans ? CUBLAS_OP_T : CUBLAS_OP_N; }

int as_int(std::int64_t v) {
  MOEGRAD_CHECK(v <= INT_MAX, "matmul", "size {} exceeds the cuBLAS integer range", v);
  return static_cast<int>(v);
}

// One column-major call; first = B, second = A (see to_col_major).
void gemm_one(cublasHandle_t h, const ColMajorGemm& g, const float* alpha, const float* first,
              const float* second, const float* beta, float* c) {
  MOEGRAD_CUBLAS_CHECK(cublasSgemm(h, op_of(g.trans_first), op_of(g.trans_second), as_int(g.m), as_int(g.n),
                                   as_int(g.k), alpha, first, as_int(g.ld_first), second, as_int(g.ld_second),
                                   beta, c, as_int(g.ldc)));
}
void gemm_one(cublasHandle_t h, const ColMajorGemm& g, const double* alpha, const double* first,
              const double* second, const double* beta, double* c) {
  MOEGRAD_CUBLAS_CHECK(cublasDgemm(h, op_of(g.trans_first), op_of(g.trans_second), as_int(g.m), as_int(g.n),
                                   as_int(g.k), alpha, first, as_int(g.ld_first), second, as_int(g.ld_second),
                                   beta, c, as_int(g.ldc)));
}
void gemm_batched(cublasHandle_t h, const ColMajorGemm& g, const float* alpha, const float* first,
                  long long s_first, const float* second, long long s_second, const float* beta, float* c,
                  long long s_c, int batch) {
  MOEGRAD_CUBLAS_CHECK(cublasSgemmStridedBatched(h, op_of(g.trans_first), op_of(g.trans_second), as_int(g.m),
                                                 as_int(g.n), as_int(g.k), alpha, first, as_int(g.ld_first),
                                                 s_first, second, as_int(g.ld_second), s_second, beta, c,
                                                 as_int(g.ldc), s_c, batch));
}
void gemm_batched(cublasHandle_t h, const ColMajorGemm& g, const double* alpha, const double* first,
                  long long s_first, const double* second, long long s_second, const double* beta,
                  double* c, long long s_c, int batch) {
  MOEGRAD_CUBLAS_CHECK(cublasDgemmStridedBatched(h, op_of(g.trans_first), op_of(g.trans_second), as_int(g.m),
                                                 as_int(g.n), as_int(g.k), alpha, first, as_int(g.ld_first),
                                                 s_first, second, as_int(g.ld_second), s_second, beta, c,
                                                 as_int(g.ldc), s_c, batch));
}

// bf16 operands, f32 accumulation and C (core/precision.h): cublasGemmEx / its strided-batched
// form with CUDA_R_16BF inputs and CUBLAS_COMPUTE_32F.
void gemm_one(cublasHandle_t h, const ColMajorGemm& g, const float* alpha, const Bf16* first,
              const Bf16* second, const float* beta, float* c) {
  MOEGRAD_CUBLAS_CHECK(cublasGemmEx(h, op_of(g.trans_first), op_of(g.trans_second), as_int(g.m), as_int(g.n),
                                    as_int(g.k), alpha, first, CUDA_R_16BF, as_int(g.ld_first), second, CUDA_R_16BF,
                                    as_int(g.ld_second), beta, c, CUDA_R_32F, as_int(g.ldc), CUBLAS_COMPUTE_32F,
                                    CUBLAS_GEMM_DEFAULT));
}
void gemm_batched(cublasHandle_t h, const ColMajorGemm& g, const float* alpha, const Bf16* first,
                  long long s_first, const Bf16* second, long long s_second, const float* beta, float* c,
                  long long s_c, int batch) {
  MOEGRAD_CUBLAS_CHECK(cublasGemmStridedBatchedEx(
      h, op_of(g.trans_first), op_of(g.trans_second), as_int(g.m), as_int(g.n), as_int(g.k), alpha, first,
      CUDA_R_16BF, as_int(g.ld_first), s_first, second, CUDA_R_16BF, as_int(g.ld_second), s_second, beta, c,
      CUDA_R_32F, as_int(g.ldc), s_c, batch, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
}

// offsets[i] = offsets[0] + i * step for all i (step may be 0: a broadcast operand).
bool uniform_step(const std::int64_t* off, std::int64_t batch, std::int64_t& step) {
  step = batch > 1 ? off[1] - off[0] : 0;
  for (std::int64_t i = 2; i < batch; ++i)
    if (off[i] - off[i - 1] != step) return false;
  return true;
}

}  // namespace

template <class T, class Out>
void gemm_strided(const RowMajorGemm& g, Out alpha, const T* a, const T* b, Out beta, Out* c,
                  std::int64_t batch, const std::int64_t* a_off, const std::int64_t* b_off,
                  const std::int64_t* c_off, int device) {
  if (batch == 0 || g.m == 0 || g.n == 0) return;
  cublasHandle_t h = handle(device);
  const ColMajorGemm cm = to_col_major(g);
  // k == 0: cuBLAS scales C by beta (writing zeros for beta == 0), as BLAS does.
  std::int64_t sa = 0, sb = 0, sc = 0;
  if (batch > 1 && batch <= INT_MAX && uniform_step(a_off, batch, sa) && uniform_step(b_off, batch, sb) &&
      uniform_step(c_off, batch, sc) && sc != 0) {
    gemm_batched(h, cm, &alpha, b + b_off[0], sb, a + a_off[0], sa, &beta, c + c_off[0], sc,
                 static_cast<int>(batch));
    return;
  }
  for (std::int64_t i = 0; i < batch; ++i) gemm_one(h, cm, &alpha, b + b_off[i], a + a_off[i], &beta, c + c_off[i]);
}

// Grouped items: one strided-batched call per distinct size, items of a size in their order.
template <class T, class Out>
void gemm_grouped(const RowMajorGemm& g, Out alpha, const T* a, const T* b, Out beta, Out* c,
                  const GemmGroups& items, int device) {
  std::map<std::int64_t, GemmGroups> by_size;  // size -> its items, in order
  for (std::size_t i = 0; i < items.size.size(); ++i)
    by_size[items.size[i]].add(items.size[i], items.a_off[i], items.b_off[i], items.c_off[i]);
  for (const auto& [size, batch] : by_size) {
    RowMajorGemm gi = g;
    (items.vary_k ? gi.k : gi.m) = size;
    gemm_strided<T, Out>(gi, alpha, a, b, beta, c, static_cast<std::int64_t>(batch.size.size()), batch.a_off.data(),
                    batch.b_off.data(), batch.c_off.data(), device);
  }
}

}  // namespace moegrad::core::cuda

namespace moegrad::core {

template <class T, class Out>
const GemmKernels<T, Out> GemmKernels<T, Out>::cuda = {&cuda::gemm_strided<T, Out>, &cuda::gemm_grouped<T, Out>};
template const GemmKernels<float> GemmKernels<float>::cuda;
template const GemmKernels<double> GemmKernels<double>::cuda;
template const GemmKernels<Bf16, float> GemmKernels<Bf16, float>::cuda;

}  // namespace moegrad::core
