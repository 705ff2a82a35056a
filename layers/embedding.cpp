#include "layers/embedding.h"

#include <algorithm>

namespace moegrad::nn {

Embedding::Embedding(std::int64_t num_embeddings, std::int64_t dim, TensorOptions options, core::Generator* gen)
    : num_(num_embeddings), dim_(dim) {
  MOEGRAD_CHECK(num_embeddings > 0 && dim > 0, "Embedding", "sizes must be > 0, got {} and {}", num_embeddings, dim);
  register_parameter("weight", core::randn({num_embeddings, dim}, options, gen));
}

Variable Embedding::forward(const Tensor& ids) {
  MOEGRAD_CHECK(ids.defined() && ids.dtype() == core::DType::i64, "Embedding", "ids must be i64, got {}",
                ids.defined() ? core::describe(ids) : "undefined");
  const Tensor flat = core::contiguous(core::reshape(ids, {-1}));
  const Tensor host = core::to_device(flat, core::Device::cpu());
  const std::int64_t* p = host.data<std::int64_t>();
  if (std::any_of(p, p + host.numel(), [&](std::int64_t i) { return i < 0 || i >= num_; }))
    fail("Embedding", "ids must be in [0, {}), got values outside it in {}", num_, core::describe(ids));
  Shape out = ids.shape();
  out.push_back(dim_);
  return ag::reshape(ag::index_select(parameter("weight"), 0, flat), out);
}

}  // namespace moegrad::nn
