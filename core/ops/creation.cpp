// Creation, copies, dtype and device moves.
#include "core/ops/creation.h"

#include <cmath>

#include "core/ops/map.h"
#include "core/cuda/runtime.h"
#include "core/ops/dispatch.h"
#include "core/ops/views.h"
#include "core/scalar_math.h"

namespace moegrad::core {

Tensor empty(const Shape& shape, TensorOptions opt) {
  for (auto s : shape)
    MOEGRAD_CHECK(s >= 0, "empty", "negative size in shape {}", shape_str(shape));
  const std::size_t nbytes = static_cast<std::size_t>(shape_numel(shape)) * dtype_size(opt.dtype);
  return Tensor(std::make_shared<Storage>(nbytes, opt.device), shape, contiguous_strides(shape), 0,
                opt.dtype);
}

Tensor full(const Shape& shape, double value, TensorOptions opt) {
  Tensor t = empty(shape, opt);
  fill_(t, value);
  return t;
}
Tensor zeros(const Shape& shape, TensorOptions opt) { return full(shape, 0.0, opt); }
Tensor ones(const Shape& shape, TensorOptions opt) { return full(shape, 1.0, opt); }
Tensor empty_like(const Tensor& t) { return empty(t.shape(), {t.dtype(), t.device()}); }
Tensor zeros_like(const Tensor& t) { return zeros(t.shape(), {t.dtype(), t.device()}); }
Tensor ones_like(const Tensor& t) { return ones(t.shape(), {t.dtype(), t.device()}); }
Tensor full_like(const Tensor& t, double value) { return full(t.shape(), value, {t.dtype(), t.device()}); }
Tensor scalar_tensor(double value, TensorOptions opt) { return full({}, value, opt); }

Tensor arange(double start, double end, double step, TensorOptions opt) {
  MOEGRAD_CHECK(step != 0 && std::isfinite(start) && std::isfinite(end) && std::isfinite(step),
                "arange", "bad range start={} end={} step={}", start, end, step);
  const auto n = static_cast<std::int64_t>(std::max(0.0, std::ceil((end - start) / step)));
  Tensor host = empty({n}, {opt.dtype, Device::cpu()});
  visit_numeric(opt.dtype, "arange", [&](auto tag) {
    using T = typename decltype(tag)::type;
    T* p = host.data<T>();
    for (std::int64_t i = 0; i < n; ++i) p[i] = static_cast<T>(start + static_cast<double>(i) * step);
  });
  return to_device(host, opt.device);
}
Tensor arange(std::int64_t end, TensorOptions opt) { return arange(0.0, static_cast<double>(end), 1.0, opt); }

template <class T> Tensor from_vector(const std::vector<T>& values, const Shape& shape, Device device) {
  MOEGRAD_CHECK(static_cast<std::int64_t>(values.size()) == shape_numel(shape), "from_vector",
                "{} values do not fill shape {}", values.size(), shape_str(shape));
  Tensor host = empty(shape, {dtype_of<T>(), Device::cpu()});
  T* p = host.data<T>();
  for (std::size_t i = 0; i < values.size(); ++i) p[i] = values[i];
  return to_device(host, device);
}
template Tensor from_vector<float>(const std::vector<float>&, const Shape&, Device);
template Tensor from_vector<double>(const std::vector<double>&, const Shape&, Device);
template Tensor from_vector<std::int64_t>(const std::vector<std::int64_t>&, const Shape&, Device);
template Tensor from_vector<std::uint8_t>(const std::vector<std::uint8_t>&, const Shape&, Device);
template <> Tensor from_vector<bool>(const std::vector<bool>& values, const Shape& shape, Device device) {
  MOEGRAD_CHECK(static_cast<std::int64_t>(values.size()) == shape_numel(shape), "from_vector",
                "{} values do not fill shape {}", values.size(), shape_str(shape));
  Tensor host = empty(shape, {DType::b8, Device::cpu()});
  bool* p = host.data<bool>();
  for (std::size_t i = 0; i < values.size(); ++i) p[i] = values[i];
  return to_device(host, device);
}

void copy_(const Tensor& dst, const Tensor& src) {
  common_device("copy_", {&dst, &src});
  const Tensor s = expand(src, dst.shape());  // throws "[expand] ..." if src doesn't broadcast
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
  Tensor out = empty_like(t);
  if (t.device().is_cuda() && t.is_contiguous()) {
    cuda::copy_bytes(out.raw_data(), t.raw_data(), static_cast<std::size_t>(t.numel()) * dtype_size(t.dtype()),
                     t.device().index);
    return out;
  }
  copy_(out, t);
  return out;
}

Tensor to_dtype(const Tensor& t, DType dtype) {
  check_defined("to_dtype", t);
  if (t.dtype() == dtype) return t;
  Tensor out = empty(t.shape(), {dtype, t.device()});
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
  Tensor out = empty(t.shape(), {t.dtype(), device});
  cuda::copy_bytes(out.raw_data(), src.raw_data(),
                   static_cast<std::size_t>(t.numel()) * dtype_size(t.dtype()),
                   t.device().is_cuda() ? t.device().index : device.index);
  return out;
}

}  // namespace moegrad::core
