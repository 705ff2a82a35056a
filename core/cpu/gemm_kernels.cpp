// The CPU's GemmKernels tables (core/kernels/gemm.h): the CBLAS products of
// core/cpu/blas_gemm.h, which thread the work themselves (the device index is unused).
#include "core/cpu/blas_gemm.h"
#include "core/kernels/gemm.h"

namespace moegrad::core::cpu {
namespace {

template <class T, class Out>
void strided(const RowMajorGemm& g, Out alpha, const T* a, const T* b, Out beta, Out* c, std::int64_t batch,
             const std::int64_t* a_off, const std::int64_t* b_off, const std::int64_t* c_off, int) {
  gemm_strided<T, Out>(g, alpha, a, b, beta, c, batch, a_off, b_off, c_off);
}

template <class T, class Out>
void grouped(const RowMajorGemm& g, Out alpha, const T* a, const T* b, Out beta, Out* c, const GemmGroups& items,
             int) {
  gemm_grouped<T, Out>(g, alpha, a, b, beta, c, items);
}

}  // namespace
}  // namespace moegrad::core::cpu

namespace moegrad::core {

template <class T, class Out>
const GemmKernels<T, Out> GemmKernels<T, Out>::cpu = {&cpu::strided<T, Out>, &cpu::grouped<T, Out>};
template const GemmKernels<float> GemmKernels<float>::cpu;
template const GemmKernels<double> GemmKernels<double>::cpu;
template const GemmKernels<Bf16, float> GemmKernels<Bf16, float>::cpu;

}  // namespace moegrad::core
