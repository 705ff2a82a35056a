#include "train/generation.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#include "core/error.h"
#include "core/ops/creation.h"
#include "core/ops/views.h"
#include "core/kernels/philox.h"
#include "train/philox_draws.h"
#include "train/text_data.h"

namespace moegrad::train {

std::int64_t sample_logits(const std::vector<double>& logits, double temperature, std::int64_t top_k, double u) {
  const auto n = static_cast<std::int64_t>(logits.size());
  MOEGRAD_CHECK(n > 0, "generate", "no logits to sample from");
  if (temperature == 0) return std::max_element(logits.begin(), logits.end()) - logits.begin();
  // Candidates by descending logit, ties by ascending index; keep the first top_k.
  std::vector<std::int64_t> order(static_cast<std::size_t>(n));
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](std::int64_t a, std::int64_t b) {
    return logits[static_cast<std::size_t>(a)] > logits[static_cast<std::size_t>(b)];
  });
  if (top_k > 0 && top_k < n) order.resize(static_cast<std::size_t>(top_k));
  const double top = logits[static_cast<std::size_t>(order.front())];
  std::vector<double> p(order.size());
  double total = 0;
  for (std::size_t i = 0; i < order.size(); ++i)
    total += p[i] = std::exp((logits[static_cast<std::size_t>(order[i])] - top) / temperature);
  double acc = 0;
  const double target = u * total;
  for (std::size_t i = 0; i < order.size(); ++i) {
    acc += p[i];
    if (target < acc) return order[i];
  }
  return order.back();  // u * total rounded to the sum itself
}

std::string generate(TaskModel& model, std::int64_t context, const std::string& prompt, const GenerateOptions& o) {
  MOEGRAD_CHECK(!prompt.empty(), "generate", "--prompt must not be empty (the model needs at least one byte to continue)");
  MOEGRAD_CHECK(context >= 1, "generate", "the context must be >= 1, got {}", context);
  MOEGRAD_CHECK(o.tokens >= 0, "generate", "--tokens must be >= 0, got {}", o.tokens);
  MOEGRAD_CHECK(o.temperature >= 0 && std::isfinite(o.temperature), "generate", "--temperature must be >= 0, got {}",
                o.temperature);
  ag::NoGradGuard no_grad;
  const core::Device device = model.device();
  const std::uint64_t key = core::splitmix64(o.seed);
  std::string text = prompt, out;
  for (std::int64_t i = 0; i < o.tokens; ++i) {
    const std::int64_t n = std::min<std::int64_t>(static_cast<std::int64_t>(text.size()), context);
    Batch batch;
    batch.x = core::to_device(bytes_to_tokens(text.substr(text.size() - static_cast<std::size_t>(n))), device);
    const ModelOutput r = model.forward(batch);  // prediction [1, n, V]
    const core::Tensor last =
        core::to_device(core::contiguous(core::to_dtype(core::reshape(r.prediction, {n, -1}), core::DType::f64)),
                        core::Device::cpu());
    const std::int64_t v = last.size(1);
    MOEGRAD_CHECK(v == 256, "generate", "the model's vocabulary is {}, not 256 bytes", v);
    const double* row = last.data<double>() + (n - 1) * v;
    const std::vector<double> logits(row, row + v);
    Draws draws(key, static_cast<std::uint64_t>(i));
    const std::int64_t next = sample_logits(logits, o.temperature, o.top_k, draws.uniform());
    text.push_back(static_cast<char>(next));
    out.push_back(static_cast<char>(next));
  }
  return out;
}

}  // namespace moegrad::train
