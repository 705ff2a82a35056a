// The CPU's GemmKernels tables (core/kernels/gemm.h): the CBLAS products of
// core/cpu/blas_gemm.h, which thread the work themselves (the device index is unused).
#include "core/cpu/blas_gemm.h"
#include "core/kernels/gemm.h"

namespace moegrad::core::cpu {
namespace {

template <class T>
void strided(const RowMajorGemm& g, T alpha, const T* a, const T* b, T beta, T* c, std::int64_t batch,
             const std::int64_t* a_off, const std::int64_t* b_off, const std::int64_t* c_off, int) {
  gemm_strided<T>(g, alpha, a, b, beta, c, batch, a_off, b_off, c_off);
}

template <class T>
void grouped(const RowMajorGemm& g, T alpha, const T* a, const T* b, T beta, T* c, const GemmGroups& items, int) {
  gemm_grouped<T>(g, alpha, a, b, beta, c, items);
}

}  // namespace
}  // namespace moegrad::core::cpu

namespace moegrad::core {

template <class T> const GemmKernels<T> GemmKernels<T>::cpu = {&cpu::strided<T>, &cpu::grouped<T>};
template const GemmKernels<float> GemmKernels<float>::cpu;
template const GemmKernels<double> GemmKernels<double>::cpu;

}  // namespace moegrad::core
