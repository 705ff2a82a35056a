// rand / uniform / randn / gumbel from Philox4x32-10, on the tensor's device (RandomKernels). The mapping from (seed,
// offset) to values is documented in core/kernels/philox.h; every element is a pure function of
// (seed, block index, lane), so results do not depend on the thread count.
#include "core/rng.h"

#include <omp.h>

#include <algorithm>
#include <cmath>
#include <numbers>
#include <type_traits>

#include "core/backend.h"
#include "core/kernels/random.h"

namespace moegrad::core {
namespace {

enum class Dist { uniform, normal };  // uniform also covers uniform(lo, hi) and gumbel

// Blocks an op of n elements consumes.
std::uint64_t blocks_for(Dist dist, DType dtype, std::int64_t n) {
  const auto u = static_cast<std::uint64_t>(n);
  if (dist == Dist::normal) return u;
  return dtype == DType::f32 ? (u + 3) / 4 : (u + 1) / 2;
}

// The device's fill for a contiguous output (RandomKernels, core/kernels/random.h).
template <class T>
void fill_uniform(const Tensor& out, std::uint64_t seed, std::uint64_t first, math::UniformUnit f) {
  backend<RandomKernels<T>>("rand", out.device()).uniform_unit(out.data<T>(), out.numel(), seed, first, f, out.device().index);
}
template <class T>
void fill_uniform(const Tensor& out, std::uint64_t seed, std::uint64_t first, math::UniformRange<T> f) {
  backend<RandomKernels<T>>("uniform", out.device())
      .uniform_range(out.data<T>(), out.numel(), seed, first, f, out.device().index);
}
template <class T>
void fill_uniform(const Tensor& out, std::uint64_t seed, std::uint64_t first, math::GumbelFromUniform f) {
  backend<RandomKernels<T>>("gumbel", out.device()).gumbel(out.data<T>(), out.numel(), seed, first, f, out.device().index);
}
template <class T>
void fill_normal(const Tensor& out, std::uint64_t seed, std::uint64_t first) {
  backend<RandomKernels<T>>("randn", out.device()).normal(out.data<T>(), out.numel(), seed, first, out.device().index);
}

Generator& pick(Generator* gen) { return gen ? *gen : default_generator(); }

Tensor make(const char* op, const Shape& shape, TensorOptions opt) {
  MOEGRAD_CHECK(is_floating(opt.dtype), op, "needs f32 or f64, got {}", dtype_name(opt.dtype));
  return empty_for(op, shape, opt);
}

// Draws a uniform-based distribution: f(U) per element, U in [0, 1) in the output dtype.
template <class MakeF>
Tensor draw_uniform(const char* op, const Shape& shape, TensorOptions opt, Generator* gen,
                    MakeF make_f) {
  Tensor out = make(op, shape, opt);
  const std::int64_t n = out.numel();
  Generator& g = pick(gen);
  const std::uint64_t first = g.advance(blocks_for(Dist::uniform, opt.dtype, n));
  if (n == 0) return out;
  if (opt.dtype == DType::f32)
    fill_uniform<float>(out, g.seed(), first, make_f(TypeTag<float>{}));
  else
    fill_uniform<double>(out, g.seed(), first, make_f(TypeTag<double>{}));
  return out;
}

}  // namespace

Generator& default_generator() {
  static Generator gen(0);
  return gen;
}

void manual_seed(std::uint64_t seed) { default_generator().manual_seed(seed); }

Tensor rand(const Shape& shape, TensorOptions opt, Generator* gen) {
  return draw_uniform("rand", shape, opt, gen, [](auto) { return math::UniformUnit{}; });
}

Tensor uniform(const Shape& shape, double lo, double hi, TensorOptions opt, Generator* gen) {
  MOEGRAD_CHECK(std::isfinite(lo) && std::isfinite(hi) && lo <= hi, "uniform",
                "needs finite lo <= hi, got [{}, {})", lo, hi);
  return draw_uniform("uniform", shape, opt, gen, [lo, hi](auto tag) {
    using T = typename decltype(tag)::type;
    const T l = static_cast<T>(lo), h = static_cast<T>(hi), w = h - l;
    const T below = l < h ? std::nextafter(h, l) : l;  // largest value < hi (rounding guard)
    return math::UniformRange<T>{l, w, h, below};
  });
}

Tensor gumbel(const Shape& shape, TensorOptions opt, Generator* gen) {
  return draw_uniform("gumbel", shape, opt, gen, [](auto) { return math::GumbelFromUniform{}; });
}

Tensor randn(const Shape& shape, TensorOptions opt, Generator* gen) {
  Tensor out = make("randn", shape, opt);
  const std::int64_t n = out.numel();
  Generator& g = pick(gen);
  const std::uint64_t first = g.advance(blocks_for(Dist::normal, opt.dtype, n));
  if (n == 0) return out;
  if (opt.dtype == DType::f32)
    fill_normal<float>(out, g.seed(), first);
  else
    fill_normal<double>(out, g.seed(), first);
  return out;
}

}  // namespace moegrad::core
