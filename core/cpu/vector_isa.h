// The CPU's vector features, asked once at run time, and hot CPU loops compiled twice: for
// baseline x86-64 (SSE2, what the project builds for) and for AVX2 (twice the lanes), the build
// picked from those features, so one binary runs on any x86-64 and uses the wider vectors where
// they exist.
//
// Results do not depend on the pick: the AVX2 build leaves FMA out (GCC would contract a * b + c
// into one rounding there), so both builds do the same IEEE operations in the same order.
#pragma once

namespace moegrad::core::cpu {

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__CUDACC__)

inline bool cpu_has_avx2() {
  static const bool yes = __builtin_cpu_supports("avx2");
  return yes;
}

// AVX-512 (F, BW) with BF16's conversions and dot products (core/cpu/convert.cpp).
inline bool cpu_has_avx512_bf16() {
  static const bool yes = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                          __builtin_cpu_supports("avx512bf16");
  return yes;
}

// body() inlined into a function compiled for AVX2. The body must inline all of its loop:
// declare it MOEGRAD_VECTOR_BODY, and keep the loop's callees inline functions.
template <class Body> __attribute__((target("avx2"))) void call_with_avx2(const Body& body) { body(); }

#define MOEGRAD_VECTOR_BODY __attribute__((always_inline))

// Runs body() through the AVX2 build where the CPU has AVX2, else through the baseline build.
template <class Body> inline void call_vectorised(const Body& body) {
  if (cpu_has_avx2())
    call_with_avx2(body);
  else
    body();
}

#else

#define MOEGRAD_VECTOR_BODY
template <class Body> inline void call_vectorised(const Body& body) { body(); }

#endif

}  // namespace moegrad::core::cpu
