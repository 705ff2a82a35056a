// CPU-only build: no random draws on a CUDA device.
#include "core/cuda/rng.h"
#include "core/error.h"
#include "core/kernels/rng_math.h"

namespace moegrad::core::cuda {

template <class T, class F>
void fill_uniform(T*, std::int64_t, std::uint64_t, std::uint64_t, F, int device) {
  fail("rand", "random draws on cuda:{}: moegrad was built without CUDA", device);
}
template <class T>
void fill_normal(T*, std::int64_t, std::uint64_t, std::uint64_t, int device) {
  fail("randn", "random draws on cuda:{}: moegrad was built without CUDA", device);
}

#define MOEGRAD_RNG(T)                                                                                          \
  template void fill_uniform<T, math::UniformUnit>(T*, std::int64_t, std::uint64_t, std::uint64_t,             \
                                                   math::UniformUnit, int);                                    \
  template void fill_uniform<T, math::UniformRange<T>>(T*, std::int64_t, std::uint64_t, std::uint64_t,         \
                                                       math::UniformRange<T>, int);                            \
  template void fill_uniform<T, math::GumbelFromUniform>(T*, std::int64_t, std::uint64_t, std::uint64_t,       \
                                                         math::GumbelFromUniform, int);                        \
  template void fill_normal<T>(T*, std::int64_t, std::uint64_t, std::uint64_t, int);
MOEGRAD_RNG(float)
MOEGRAD_RNG(double)

}  // namespace moegrad::core::cuda
