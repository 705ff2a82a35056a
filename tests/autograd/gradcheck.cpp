#include "tests/autograd/gradcheck.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>

#include "core/build_info.h"

namespace gradcheck {

namespace core = moegrad::core;
namespace ag = moegrad::ag;

bool register_entry(const char* op) {
  const_cast<std::vector<std::string>&>(entries()).push_back(op);
  return true;
}
const std::vector<std::string>& entries() {
  static std::vector<std::string> names;
  return names;
}

Tensor index(const std::vector<std::int64_t>& values, const Shape& shape) {
  return core::from_vector<std::int64_t>(values, shape);
}

namespace {

// Storage offsets of a view's elements in row-major order.
std::vector<std::int64_t> element_offsets(const Tensor& t) {
  std::vector<std::int64_t> out(static_cast<std::size_t>(t.numel()));
  std::vector<std::int64_t> idx(t.shape().size(), 0);
  for (std::int64_t i = 0; i < t.numel(); ++i) {
    std::int64_t off = 0;
    for (std::size_t d = 0; d < idx.size(); ++d) off += idx[d] * t.strides()[d];
    out[i] = off;
    for (std::size_t d = idx.size(); d-- > 0;) {
      if (++idx[d] < t.shape()[d]) break;
      idx[d] = 0;
    }
  }
  return out;
}

double weighted_sum(const Tensor& y, const Tensor& w) {
  return core::sum(core::mul(core::to_dtype(y, core::DType::f64), w)).item<double>();
}

}  // namespace

// The f64 CPU storage an input's view is taken from (see make_input).
Tensor make_base(const Input& in, std::uint64_t seed) {
  core::Generator gen(seed);
  Shape stored = in.shape;
  const std::size_t n = stored.size();
  if (in.layout == Layout::transposed) {
    REQUIRE_MESSAGE(n >= 2, "transposed layout needs 2+ dims");
    std::swap(stored[n - 1], stored[n - 2]);
  } else if (in.layout == Layout::strided) {
    REQUIRE_MESSAGE(n >= 1, "strided layout needs 1+ dims");
    stored[n - 1] *= 2;
  }
  Tensor base = core::uniform(stored, -1.0, 1.0, {core::DType::f64}, &gen);
  if (in.domain == Domain::positive) base = core::add(core::mul(core::abs(base), 1.0), 0.5);  // [0.5, 1.5)
  if (in.domain == Domain::away_from_zero)
    base = core::add(base, core::mul(core::sign(base), 0.3));  // |x| >= 0.3
  if (in.domain == Domain::distinct) {
    // Well separated values (a shuffled ramp), so max/sort-like ops have no near-ties.
    Tensor noise = core::rand(stored, {core::DType::f64}, &gen);
    const auto count = core::shape_numel(stored);
    std::vector<double> v(static_cast<std::size_t>(count));
    auto u = noise.to_vector<double>();
    std::vector<std::int64_t> order(v.size());
    for (std::size_t i = 0; i < order.size(); ++i) order[i] = static_cast<std::int64_t>(i);
    std::sort(order.begin(), order.end(), [&](auto a, auto b) { return u[a] < u[b]; });
    for (std::size_t r = 0; r < order.size(); ++r) v[order[r]] = -1.0 + 2.0 * (static_cast<double>(r) + 0.5) / count;
    base = core::from_vector<double>(v, stored);
  }
  return base;
}

// The leaf: base seen through the input's layout (on base's device, in base's dtype).
Variable view_of(const Tensor& base, const Input& in) {
  Tensor view = base;
  if (in.layout == Layout::transposed) view = core::transpose(base, -1, -2);
  if (in.layout == Layout::strided) view = core::slice(base, -1, 0, base.size(-1), 2);
  CHECK(view.shape() == in.shape);
  return Variable(view, true);
}

Variable make_input(const Input& in, std::uint64_t seed) { return view_of(make_base(in, seed), in); }

Tensor on(const Tensor& t, const Variable& like) {
  Tensor out = core::to_device(t, like.value().device());
  return core::is_floating(out.dtype()) ? core::to_dtype(out, like.dtype()) : out;
}

Mode& mode() {
  static Mode m = Mode::finite_difference;
  return m;
}

namespace {

// The same case on the CPU and on cuda:0, in f64 and f32: outputs and input gradients compared.
void check_cuda_vs_cpu(const Fn& f, const std::vector<Input>& specs) {
  for (const core::DType dtype : {core::DType::f64, core::DType::f32}) {
    INFO("dtype: ", core::dtype_name(dtype));
    const bool f64 = dtype == core::DType::f64;
    const double atol = f64 ? 1e-12 : 1e-5, rtol = f64 ? 1e-10 : 1e-5;
    std::vector<Variable> on_cpu, on_gpu;
    for (std::size_t i = 0; i < specs.size(); ++i) {
      const Tensor base = core::to_dtype(make_base(specs[i], 1000 + 17 * i), dtype);
      on_cpu.push_back(view_of(base, specs[i]));
      on_gpu.push_back(view_of(core::to_device(base, core::Device::cuda(0)), specs[i]));
    }
    Variable yc = f(on_cpu), yg = f(on_gpu);
    REQUIRE(yg.value().device().is_cuda());
    cuda_test::expect_close("output", yc.value(), yg.value(), atol, rtol);
    core::Generator wgen(4242);
    const Tensor w = core::to_dtype(core::uniform(yc.shape(), 0.5, 1.5, {core::DType::f64}, &wgen), dtype);
    ag::sum(ag::mul(yc, ag::constant(w))).backward();
    ag::sum(ag::mul(yg, ag::constant(core::to_device(w, core::Device::cuda(0))))).backward();
    for (std::size_t i = 0; i < specs.size(); ++i) {
      const Tensor gc = on_cpu[i].grad(), gg = on_gpu[i].grad();
      REQUIRE_MESSAGE(gc.defined() == gg.defined(), "input ", i, ": gradient defined on one device only");
      if (gc.defined()) cuda_test::expect_close(fmt::format("grad of input {}", i), gc, gg, atol, rtol);
    }
  }
}

}  // namespace

void check(const std::string& label, const Fn& f, const std::vector<Input>& specs, Options opt) {
  INFO("case: ", label);
  if (mode() == Mode::cuda_vs_cpu) {
    check_cuda_vs_cpu(f, specs);
    return;
  }
  std::vector<Variable> inputs;
  for (std::size_t i = 0; i < specs.size(); ++i) inputs.push_back(make_input(specs[i], 1000 + 17 * i));

  Variable y = f(inputs);
  REQUIRE(y.defined());
  REQUIRE_MESSAGE(y.requires_grad(), "output does not require grad");
  core::Generator wgen(4242);
  const Tensor w = core::uniform(y.shape(), 0.5, 1.5, {core::DType::f64}, &wgen);
  Variable loss = ag::sum(ag::mul(y, ag::constant(w)));
  loss.backward();

  for (std::size_t i = 0; i < inputs.size(); ++i) {
    const Tensor& x = inputs[i].value();
    const Tensor analytic = inputs[i].grad().defined() ? inputs[i].grad() : core::zeros(x.shape(), {core::DType::f64});
    REQUIRE_MESSAGE(analytic.shape() == x.shape(), "gradient shape ", core::shape_str(analytic.shape()),
                    " differs from input shape ", core::shape_str(x.shape()));
    REQUIRE(analytic.dtype() == core::DType::f64);
    const auto a = analytic.to_vector<double>();
    const auto offsets = element_offsets(x);
    double* data = static_cast<double*>(x.storage()->data());
    int reported = 0;
    for (std::size_t e = 0; e < offsets.size(); ++e) {
      double& slot = data[offsets[e]];
      const double orig = slot;
      double lp, lm;
      {
        ag::NoGradGuard guard;
        slot = orig + opt.eps;
        lp = weighted_sum(f(inputs).value(), w);
        slot = orig - opt.eps;
        lm = weighted_sum(f(inputs).value(), w);
      }
      slot = orig;
      const double numeric = (lp - lm) / (2 * opt.eps);
      const bool ok = std::abs(a[e] - numeric) <= opt.atol + opt.rtol * std::abs(numeric);
      if (!ok && reported++ < 5)
        FAIL_CHECK(fmt::format("input {} element {}: analytic {:.10g} vs numeric {:.10g}", i, e, a[e], numeric));
    }
  }
}

}  // namespace gradcheck
