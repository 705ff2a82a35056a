// Creation, copies, dtype and device moves.
#include "core/ops/creation.h"

#include <cmath>
#include <new>

#include "core/checked_math.h"
#include "core/cpu/allocator.h"
#include "core/ops/map.h"
#include "core/cuda/runtime.h"
#include "core/ops/dispatch.h"
#include "core/ops/views.h"
#include "core/scalar_math.h"

namespace moegrad::core {

Tensor empty_for(const char* op, const Shape& shape, TensorOptions opt) {
  const std::int64_t numel = shape_numel(shape, op);  // sizes >= 0, count within int64
  Shape strides = contiguous_strides(shape, op);
  std::int64_t nbytes = 0;
  if (!mul_fits(numel, static_cast<std::int64_t>(dtype_size(opt.dtype)), nbytes))
    fail(op, "{} shape {} is too large: its byte count overflows int64", dtype_name(opt.dtype), shape_str(shape));
  std::shared_ptr<Storage> storage;
  try {
    storage = std::make_shared<Storage>(static_cast<std::size_t>(nbytes), opt.device);
  } catch (const cpu::OutOfMemory& e) {
    fail(op, "cannot allocate {} for a {} tensor of shape {} on {}: {}", bytes_str(static_cast<std::uint64_t>(nbytes)),
         dtype_name(opt.dtype), shape_str(shape), opt.device.str(), e.reason());
  } catch (const std::bad_alloc&) {  // the shared_ptr's control block
    fail(op, "cannot allocate {} for a {} tensor of shape {} on {}: out of memory",
         bytes_str(static_cast<std::uint64_t>(nbytes)), dtype_name(opt.dtype), shape_str(shape), opt.device.str());
  }
  return Tensor(std::move(storage), shape, std::move(strides), 0, opt.dtype);
}

Tensor empty(const Shape& shape, TensorOptions opt) { return empty_for("empty", shape, opt); }

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
  Tensor out = empty_for("clone", t.shape(), {t.dtype(), t.device()});
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
  cuda::copy_bytes(out.raw_data(), src.raw_data(),
                   static_cast<std::size_t>(t.numel()) * dtype_size(t.dtype()),
                   t.device().is_cuda() ? t.device().index : device.index);
  return out;
}

}  // namespace moegrad::core
