// The CPU's ConvertKernels (core/kernels/convert.h): f32 -> bf16 with vcvtne2ps2bf16 where the CPU
// has AVX512_BF16 (checked at run time: one binary runs on any x86-64), else the scalar rule.
// Threads take contiguous ranges above kParallelGrain elements.
#include <immintrin.h>
#include <omp.h>

#include <algorithm>

#include "core/cpu/loops.h"  // kParallelGrain
#include "core/cpu/vector_isa.h"
#include "core/kernels/bf16_math.h"
#include "core/kernels/convert.h"

namespace moegrad::core::cpu {
namespace {

void scalar_range(const float* in, Bf16* out, std::int64_t lo, std::int64_t hi) {
  for (std::int64_t i = lo; i < hi; ++i) out[i].bits = math::bf16_bits_rne(in[i]);
}

#if defined(__x86_64__) && defined(__GNUC__)
#define MOEGRAD_HAVE_AVX512_BF16_PATH 1
// vcvtne2ps2bf16 rounds to nearest even and quiets NaNs exactly as bf16_bits_rne does, but treats
// subnormal inputs as zero: a block of 32 with a subnormal (exponent 0, mantissa != 0) takes the
// scalar rule instead.
__attribute__((target("avx512f,avx512bw,avx512bf16"))) void avx512_range(const float* in, Bf16* out,
                                                                         std::int64_t lo, std::int64_t hi) {
  const __m512i exponent = _mm512_set1_epi32(0x7f800000), mantissa = _mm512_set1_epi32(0x007fffff);
  std::int64_t i = lo;
  for (; i + 32 <= hi; i += 32) {
    const __m512i a = _mm512_loadu_si512(in + i), b = _mm512_loadu_si512(in + i + 16);
    const __mmask16 sub_a = _mm512_testn_epi32_mask(a, exponent) & _mm512_test_epi32_mask(a, mantissa);
    const __mmask16 sub_b = _mm512_testn_epi32_mask(b, exponent) & _mm512_test_epi32_mask(b, mantissa);
    if (sub_a | sub_b) {
      scalar_range(in, out, i, i + 32);
      continue;
    }
    // The second operand fills the low 16 results.
    const __m512bh r = _mm512_cvtne2ps_pbh(_mm512_castsi512_ps(b), _mm512_castsi512_ps(a));
    _mm512_storeu_si512(out + i, reinterpret_cast<const __m512i&>(r));
  }
  scalar_range(in, out, i, hi);
}

#endif

void f32_to_bf16(const float* in, Bf16* out, std::int64_t n, int) {
  auto range = &scalar_range;
#ifdef MOEGRAD_HAVE_AVX512_BF16_PATH
  if (cpu_has_avx512_bf16()) range = &avx512_range;
#endif
  const int threads = n >= kParallelGrain && !omp_in_parallel() ? omp_get_max_threads() : 1;
#pragma omp parallel num_threads(threads) if (threads > 1)
  {
    const std::int64_t t = omp_get_thread_num(), parts = omp_get_num_threads();
    // Ranges start on multiples of 32 elements (64 bytes of output).
    const std::int64_t blocks = (n + 31) / 32;
    const std::int64_t lo = std::min(n, blocks * t / parts * 32), hi = std::min(n, blocks * (t + 1) / parts * 32);
    if (hi > lo) range(in, out, lo, hi);
  }
}

}  // namespace
}  // namespace moegrad::core::cpu

namespace moegrad::core {
const ConvertKernels ConvertKernels::cpu = {&cpu::f32_to_bf16};
}  // namespace moegrad::core
