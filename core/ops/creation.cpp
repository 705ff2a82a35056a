// Creation, copies, dtype and device moves.
#include "core/ops/creation.h"

#include <fmt/format.h>

#include <cmath>

#include "core/backend.h"
#include "core/checked_math.h"
#include "core/device_runtime.h"
#include "core/ops/map.h"
#include "core/ops/dispatch.h"
#include "core/ops/views.h"
#include "core/kernels/bf16_math.h"
#include "core/kernels/convert.h"
#include "core/kernels/scalar_math.h"

namespace moegrad::core {

namespace {
Tensor full_for(const char* op, const Shape& shape, double value, TensorOptions opt) {
  Tensor t = empty_for(op, shape, opt);
  fill_(t, value);
  return t;
}
}  // namespace

Tensor full(const Shape& shape, double value, TensorOptions opt) { return full_for("full", shape, value, opt); }
Tensor zeros(const Shape& shape, TensorOptions opt) { return full_for("zeros", shape, 0.0, opt); }
Tensor ones(const Shape& shape, TensorOptions opt) { return full_for("ones", shape, 1.0, opt); }
Tensor empty_like(const Tensor& t) { return empty_for("empty_like", t.shape(), {t.dtype(), t.device()}); }
Tensor zeros_like(const Tensor& t) { return full_for("zeros_like", t.shape(), 0.0, {t.dtype(), t.device()}); }
Tensor ones_like(const Tensor& t) { return full_for("ones_like", t.shape(), 1.0, {t.dtype(), t.device()}); }
Tensor full_like(const Tensor& t, double value) {
  return full_for("full_like", t.shape(), value, {t.dtype(), t.device()});
}
Tensor scalar_tensor(double value, TensorOptions opt) { return full_for("scalar_tensor", {}, value, opt); }

Tensor arange(double start, double end, double step, TensorOptions opt) {
  MOEGRAD_CHECK(step != 0 && std::isfinite(start) && std::isfinite(end) && std::isfinite(step),
                "arange", "bad range start={} end={} step={}", start, end, step);
  const double count = std::max(0.0, std::ceil((end - start) / step));
  // 2^63 as a double: the first count the int64 cast below cannot hold.
  MOEGRAD_CHECK(count < 9223372036854775808.0, "arange", "range start={} end={} step={} is too large: {} elements",
                start, end, step, count);
  const auto n = static_cast<std::int64_t>(count);
  Tensor host = empty_for("arange", {n}, {opt.dtype, Device::cpu()});
  visit_numeric(opt.dtype, "arange", [&](auto tag) {
    using T = typename decltype(tag)::type;
    T* p = host.data<T>();
    for (std::int64_t i = 0; i < n; ++i) p[i] = static_cast<T>(start + static_cast<double>(i) * step);
  });
  return to_device(host, opt.device);
}
Tensor arange(std::int64_t end, TensorOptions opt) { return arange(0.0, static_cast<double>(end), 1.0, opt); }

template <class T> Tensor from_vector(const std::vector<T>& values, const Shape& shape, Device device) {
  MOEGRAD_CHECK(static_cast<std::int64_t>(values.size()) == shape_numel(shape, "from_vector"), "from_vector",
                "{} values do not fill shape {}", values.size(), shape_str(shape));
  Tensor host = empty_for("from_vector", shape, {dtype_of<T>(), Device::cpu()});
  T* p = host.data<T>();
  for (std::size_t i = 0; i < values.size(); ++i) p[i] = values[i];
  return to_device(host, device);
}
template Tensor from_vector<float>(const std::vector<float>&, const Shape&, Device);
template Tensor from_vector<double>(const std::vector<double>&, const Shape&, Device);
template Tensor from_vector<std::int64_t>(const std::vector<std::int64_t>&, const Shape&, Device);
template Tensor from_vector<std::uint8_t>(const std::vector<std::uint8_t>&, const Shape&, Device);
template <> Tensor from_vector<bool>(const std::vector<bool>& values, const Shape& shape, Device device) {
  MOEGRAD_CHECK(static_cast<std::int64_t>(values.size()) == shape_numel(shape, "from_vector"), "from_vector",
                "{} values do not fill shape {}", values.size(), shape_str(shape));
  Tensor host = empty_for("from_vector", shape, {DType::b8, Device::cpu()});
  bool* p = host.data<bool>();
  for (std::size_t i = 0; i < values.size(); ++i) p[i] = values[i];
  return to_device(host, device);
}

namespace {
// bf16 converts from and to f32 only (round to nearest even; core/kernels/bf16_math.h).
void copy_bf16(const Tensor& dst, const Tensor& s) {
  const DType d = dst.dtype(), from = s.dtype();
  if (d == DType::bf16 && from == DType::f32) {
    if (dst.is_contiguous() && s.is_contiguous())  // the GEMM operands: one vectorised pass
      return backend<ConvertKernels>("copy_", dst.device())
          .f32_to_bf16(s.data<float>(), dst.data<Bf16>(), dst.numel(), dst.device().index);
    return run_map<Bf16, float>(dst, {s}, math::ToBf16{});
  }
  if (d == DType::f32 && from == DType::bf16) return run_map<float, Bf16>(dst, {s}, math::FromBf16{});
  if (d == DType::bf16 && from == DType::bf16) return run_map<Bf16, Bf16>(dst, {s}, math::CopyBf16{});
  fail("copy_", "bf16 converts only from and to f32, not {} to {}", dtype_name(from), dtype_name(d));
}
}  // namespace

void copy_(const Tensor& dst, const Tensor& src) {
  common_device("copy_", {&dst, &src});
  const Tensor s = expand(src, dst.shape());  // throws "[expand] ..." if src doesn't broadcast
  if (dst.dtype() == DType::bf16 || src.dtype() == DType::bf16) return copy_bf16(dst, s);
  visit_dtype(dst.dtype(), "copy_", [&](auto dtag) {
    using D = typename decltype(dtag)::type;
    visit_dtype(src.dtype(), "copy_", [&](auto stag) {
      using S = typename decltype(stag)::type;
      run_map<D, S>(dst, {s}, math::Cast<D>{});
    });
  });
}

void fill_(const Tensor& t, double value) {
  check_defined("fill_", t);
  visit_dtype(t.dtype(), "fill_", [&](auto tag) {
    using T = typename decltype(tag)::type;
    run_map<T>(t, {}, math::Constant<T>{static_cast<T>(value)});
  });
}

Tensor contiguous(const Tensor& t) {
  check_defined("contiguous", t);
  return t.is_contiguous() ? t : clone(t);
}

Tensor clone(const Tensor& t) {
  check_defined("clone", t);
  Tensor out = empty_for("clone", t.shape(), {t.dtype(), t.device()});
  if (t.is_contiguous()) {  // one copy of the bytes on the tensor's device
    backend<DeviceRuntime>("clone", t.device())
        .copy_bytes(out.raw_data(), t.raw_data(), static_cast<std::size_t>(t.numel()) * dtype_size(t.dtype()),
                    t.device().index);
    return out;
  }
  copy_(out, t);
  return out;
}

Tensor to_dtype(const Tensor& t, DType dtype) {
  check_defined("to_dtype", t);
  if (t.dtype() == dtype) return t;
  Tensor out = empty_for("to_dtype", t.shape(), {dtype, t.device()});
  copy_(out, t);
  return out;
}

Tensor to_device(const Tensor& t, Device device) {
  check_defined("to_device", t);
  if (t.device() == device) return t;
  MOEGRAD_CHECK(t.device().is_cpu() || device.is_cpu(), "to_device",
                "copies between two CUDA devices ({} to {}) are not supported", t.device().str(),
                device.str());
  const Tensor src = contiguous(t);  // on the source device
  Tensor out = empty_for("to_device", t.shape(), {t.dtype(), device});
  const Device gpu = t.device().is_cpu() ? device : t.device();  // the copy runs on the non-CPU side
  backend<DeviceRuntime>("to_device", gpu)
      .copy_bytes(out.raw_data(), src.raw_data(), static_cast<std::size_t>(t.numel()) * dtype_size(t.dtype()), gpu.index);
  return out;
}

// ---- Tensor's host access (core/tensor.h), written with the copies above ----

template <class T> std::vector<T> Tensor::to_vector() const {
  MOEGRAD_CHECK(defined(), "to_vector", "tensor is undefined");
  // bf16 is read through f32 (exact).
  const Tensor host = contiguous(to_device(dtype_ == DType::bf16 ? to_dtype(*this, DType::f32) : *this, Device::cpu()));
  std::vector<T> out(static_cast<std::size_t>(numel_));
  visit_dtype(host.dtype(), "to_vector", [&](auto tag) {
    using S = typename decltype(tag)::type;
    const S* src = host.data<S>();
    for (std::int64_t i = 0; i < numel_; ++i) out[i] = static_cast<T>(src[i]);
  });
  return out;
}

template <class T> T Tensor::item() const {
  MOEGRAD_CHECK(numel_ == 1, "item", "needs exactly one element, got {}", describe(*this));
  return to_vector<T>()[0];
}

#define MOEGRAD_INSTANTIATE(T)                        \
  template std::vector<T> Tensor::to_vector<T>() const; \
  template T Tensor::item<T>() const;
MOEGRAD_INSTANTIATE(float)
MOEGRAD_INSTANTIATE(double)
MOEGRAD_INSTANTIATE(std::int64_t)
MOEGRAD_INSTANTIATE(bool)
MOEGRAD_INSTANTIATE(std::uint8_t)
MOEGRAD_INSTANTIATE(int)
#undef MOEGRAD_INSTANTIATE

std::string Tensor::to_string() const {
  if (!defined()) return "Tensor(undefined)";
  std::string out = fmt::format("Tensor({}, {}, {}", shape_str(shape_), dtype_name(dtype_), device().str());
  const auto values = to_vector<double>();
  constexpr std::size_t kShown = 16;
  out += ", [";
  for (std::size_t i = 0; i < values.size() && i < kShown; ++i)
    out += (i ? ", " : "") + fmt::format("{:.6g}", values[i]);
  if (values.size() > kShown) out += fmt::format(", ... ({} values)", values.size());
  return out + "])";
}

}  // namespace moegrad::core
