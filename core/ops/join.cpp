// Joining and splitting: cat, stack, chunk, split, pad. Built from views and copy_ (which has
// the per-device kernels), so these ops need no kernels of their own.
#include <algorithm>
#include <cstdint>
#include <string>

#include "core/checked_math.h"
#include "core/ops/creation.h"
#include "core/ops/dispatch.h"
#include "core/ops/indexing.h"
#include "core/ops/views.h"

namespace moegrad::core {
namespace {

std::string list_shapes(const std::vector<Tensor>& tensors) {
  std::string s;
  for (std::size_t i = 0; i < tensors.size(); ++i) {
    if (i) s += ", ";
    s += describe(tensors[i]);
  }
  return s;
}

// Non-empty list of defined tensors on one device with one dtype.
void check_list(const char* op, const std::vector<Tensor>& tensors) {
  MOEGRAD_CHECK(!tensors.empty(), op, "expects a non-empty list of tensors");
  for (std::size_t i = 0; i < tensors.size(); ++i) {
    check_defined(op, tensors[i]);
    common_device(op, {&tensors[0], &tensors[i]});
    common_dtype(op, {&tensors[0], &tensors[i]});
  }
}

}  // namespace

Tensor cat(const std::vector<Tensor>& tensors, std::int64_t dim) {
  const char* op = "cat";
  check_list(op, tensors);
  const Tensor& first = tensors[0];
  MOEGRAD_CHECK(first.dim() > 0, op, "cannot concatenate 0-d tensors: {}", list_shapes(tensors));
  const std::int64_t d = normalize_dim(op, dim, first.shape());
  Shape shape = first.shape();
  shape[d] = 0;
  for (const Tensor& t : tensors) {
    bool same = t.dim() == first.dim();
    for (std::int64_t i = 0; same && i < t.dim(); ++i) same = i == d || t.size(i) == first.size(i);
    MOEGRAD_CHECK(same, op, "sizes must match except in dim {}, got {}", d, list_shapes(tensors));
    if (!add_fits(shape[d], t.size(d), shape[d]))
      fail(op, "the result is too large: dim {} of {} tensors overflows int64", d, tensors.size());
  }
  Tensor out = empty_for(op, shape, {first.dtype(), first.device()});
  std::int64_t offset = 0;
  for (const Tensor& t : tensors) {
    const std::int64_t len = t.size(d);
    if (len > 0 && t.numel() > 0) copy_(narrow(out, d, offset, len), t);
    offset += len;
  }
  return out;
}

Tensor stack(const std::vector<Tensor>& tensors, std::int64_t dim) {
  const char* op = "stack";
  check_list(op, tensors);
  const Tensor& first = tensors[0];
  for (const Tensor& t : tensors)
    MOEGRAD_CHECK(t.shape() == first.shape(), op, "all shapes must be equal, got {}",
                  list_shapes(tensors));
  const std::int64_t d = normalize_dim_inclusive(op, dim, first.shape());
  Shape shape = first.shape();
  shape.insert(shape.begin() + d, static_cast<std::int64_t>(tensors.size()));
  Tensor out = empty_for(op, shape, {first.dtype(), first.device()});
  if (out.numel() == 0) return out;
  for (std::size_t i = 0; i < tensors.size(); ++i)
    copy_(select(out, d, static_cast<std::int64_t>(i)), tensors[i]);
  return out;
}

std::vector<Tensor> split(const Tensor& x, const std::vector<std::int64_t>& sizes,
                          std::int64_t dim) {
  const char* op = "split";
  check_defined(op, x);
  MOEGRAD_CHECK(x.dim() > 0, op, "cannot split a 0-d tensor");
  const std::int64_t d = normalize_dim(op, dim, x.shape());
  std::int64_t total = 0;
  for (std::int64_t s : sizes) {
    MOEGRAD_CHECK(s >= 0, op, "sizes {} must be >= 0", shape_str(sizes));
    MOEGRAD_CHECK(add_fits(total, s, total), op, "sizes {} are too large: their sum overflows int64",
                  shape_str(sizes));
  }
  MOEGRAD_CHECK(total == x.size(d), op, "sizes {} sum to {} but dim {} of {} has size {}",
                shape_str(sizes), total, d, describe(x), x.size(d));
  std::vector<Tensor> parts;
  parts.reserve(sizes.size());
  std::int64_t offset = 0;
  for (std::int64_t s : sizes) {
    parts.push_back(narrow(x, d, offset, s));
    offset += s;
  }
  return parts;
}

std::vector<Tensor> split(const Tensor& x, std::int64_t split_size, std::int64_t dim) {
  const char* op = "split";
  check_defined(op, x);
  MOEGRAD_CHECK(x.dim() > 0, op, "cannot split a 0-d tensor");
  const std::int64_t d = normalize_dim(op, dim, x.shape());
  const std::int64_t size = x.size(d);
  MOEGRAD_CHECK(split_size > 0 || (split_size == 0 && size == 0), op,
                "split_size must be > 0 (got {}) for dim {} of {}", split_size, d, describe(x));
  // Like PyTorch: at least one part; the last part takes the remainder.
  const std::int64_t parts =
      split_size == 0 ? 1 : std::max<std::int64_t>((size + split_size - 1) / split_size, 1);
  std::vector<std::int64_t> sizes(static_cast<std::size_t>(parts), split_size);
  sizes.back() = size - split_size * (parts - 1);
  return split(x, sizes, d);
}

std::vector<Tensor> chunk(const Tensor& x, std::int64_t chunks, std::int64_t dim) {
  const char* op = "chunk";
  check_defined(op, x);
  MOEGRAD_CHECK(chunks > 0, op, "chunks must be > 0, got {}", chunks);
  MOEGRAD_CHECK(x.dim() > 0, op, "cannot chunk a 0-d tensor");
  const std::int64_t d = normalize_dim(op, dim, x.shape());
  const std::int64_t size = x.size(d);
  if (size == 0)  // PyTorch: `chunks` empty parts
    return split(x, std::vector<std::int64_t>(static_cast<std::size_t>(chunks), 0), d);
  return split(x, (size + chunks - 1) / chunks, d);
}

Tensor pad(const Tensor& x, const std::vector<std::int64_t>& pads, double value) {
  const char* op = "pad";
  check_defined(op, x);
  const std::int64_t n = static_cast<std::int64_t>(pads.size());
  MOEGRAD_CHECK(n % 2 == 0 && n / 2 <= x.dim(), op,
                "padding {} must have an even length of at most 2 * ndim for input {}",
                shape_str(pads), describe(x));
  Shape shape = x.shape();
  for (std::int64_t i = 0; i < n / 2; ++i) {
    const std::int64_t d = x.dim() - 1 - i;
    const bool negatable = pads[2 * i] != INT64_MIN && pads[2 * i + 1] != INT64_MIN;  // -pad below
    MOEGRAD_CHECK(negatable && add_fits(shape[d], pads[2 * i], shape[d]) && add_fits(shape[d], pads[2 * i + 1], shape[d]), op,
                  "padding {} is too large for dim {} of input {}: the size overflows int64", shape_str(pads), d,
                  describe(x));
    MOEGRAD_CHECK(shape[d] >= 0, op, "padding {} gives a negative size for dim {} of input {}",
                  shape_str(pads), d, describe(x));
  }
  Tensor out = empty_for(op, shape, {x.dtype(), x.device()});
  fill_(out, value);
  // The part of x that survives cropping, and where it lands in out.
  Tensor src = x, dst = out;
  for (std::int64_t i = 0; i < n / 2; ++i) {
    const std::int64_t d = x.dim() - 1 - i;
    const std::int64_t lo = pads[2 * i], hi = pads[2 * i + 1];
    const std::int64_t len = x.size(d) - std::max<std::int64_t>(0, -lo) -
                             std::max<std::int64_t>(0, -hi);
    if (len <= 0) return out;
    src = narrow(src, d, std::max<std::int64_t>(0, -lo), len);
    dst = narrow(dst, d, std::max<std::int64_t>(0, lo), len);
  }
  if (src.numel() > 0) copy_(dst, src);
  return out;
}

}  // namespace moegrad::core
