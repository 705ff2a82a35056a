// A language model over a whole text file in consecutive windows (text_evaluation.h).
#include "train/text_evaluation.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "core/error.h"
#include "core/ops/creation.h"
#include "core/ops/elementwise.h"
#include "core/ops/indexing.h"
#include "core/ops/reduce.h"
#include "core/ops/views.h"

namespace moegrad::train {

namespace {
constexpr const char* kOp = "eval";

// Windows [first, first + rows) of the file as inputs and targets i64 [rows, S]: window w starts at
// byte w S, except the last one when `tail` (it starts at n - 1 - S).
Batch window_batch(const TextData& text, std::int64_t first, std::int64_t rows, std::int64_t seq,
                   std::int64_t full_windows) {
  const auto* bytes = reinterpret_cast<const unsigned char*>(text.bytes.data());
  std::vector<std::int64_t> x(static_cast<std::size_t>(rows * seq)), y(x.size());
  for (std::int64_t i = 0; i < rows; ++i) {
    const std::int64_t w = first + i;
    const std::int64_t start = w < full_windows ? w * seq : text.size() - 1 - seq;
    for (std::int64_t t = 0; t < seq; ++t) {
      x[static_cast<std::size_t>(i * seq + t)] = bytes[start + t];
      y[static_cast<std::size_t>(i * seq + t)] = bytes[start + t + 1];
    }
  }
  return {core::from_vector<std::int64_t>(x, {rows, seq}), core::from_vector<std::int64_t>(y, {rows, seq}),
          core::Tensor{}};
}
}  // namespace

TextEvaluation evaluate_text(InferenceModel& m, const std::shared_ptr<const TextData>& text, std::int64_t batch) {
  const TrainConfig& c = m.config();
  if (c.task != "text")
    fail(kOp, "checkpoint '{}' is a --task {} model, not a language model (--task text): --text needs one; evaluate it "
         "on an HDF5 file with --data", m.path(), c.task);
  MOEGRAD_CHECK(batch >= 1, kOp, "--batch-size must be >= 1, got {}", batch);
  const std::int64_t n = text->size(), seq = c.seq_len;
  if (n < seq + 1)
    fail(kOp, "--text '{}' has {} bytes, shorter than one window of the checkpoint's --seq-len + 1 = {} bytes",
         text->path, n, seq + 1);
  TextEvaluation r;
  r.checkpoint = m.path();
  r.text = text->path;
  r.bytes = n;
  r.predicted = n - 1;
  r.seq_len = seq;
  r.batch_size = batch;
  const std::int64_t full = (n - 1) / seq, rest = (n - 1) % seq;
  r.windows = full + (rest > 0 ? 1 : 0);
  r.last_window_counted = rest > 0 ? rest : seq;
  r.batches = (r.windows + batch - 1) / batch;
  RoutingTotals routing(m);
  double nll = 0, correct = 0;
  std::int64_t counted = 0;
  for (std::int64_t j = 0; j < r.batches; ++j) {
    const std::int64_t first = j * batch, rows = std::min(batch, r.windows - first);
    Batch b = window_batch(*text, first, rows, seq, full);
    const core::Tensor target = core::reshape(b.y, {-1, 1});
    b.y = core::Tensor{};  // the logits alone: the positions counted are chosen here
    const ModelOutput out = m.run(b, j);
    const core::Tensor logits = core::reshape(out.prediction, {rows * seq, -1});
    MOEGRAD_CHECK(logits.size(1) == 256, kOp, "checkpoint '{}': the model's vocabulary is {}, not 256 bytes", m.path(),
                  logits.size(1));
    const std::vector<double> logp = core::gather(core::log_softmax(logits, -1), 1, target).to_vector<double>();
    const std::vector<double> hit =
        core::eq(core::argmax(logits, 1, true), target).to_vector<double>();
    routing.add();
    for (std::int64_t i = 0; i < rows; ++i) {
      // The extra last window counts only its last `rest` positions (the bytes no full window predicts).
      const std::int64_t from = first + i < full ? 0 : seq - rest;
      for (std::int64_t t = from; t < seq; ++t) {
        nll -= logp[static_cast<std::size_t>(i * seq + t)];
        correct += hit[static_cast<std::size_t>(i * seq + t)];
        ++counted;
      }
    }
  }
  MOEGRAD_CHECK(counted == r.predicted, kOp, "counted {} predicted bytes, expected {}", counted, r.predicted);
  r.loss = nll / static_cast<double>(counted);
  r.bits_per_byte = r.loss / std::log(2.0);
  r.accuracy = correct / static_cast<double>(counted);
  r.routing = routing.stats();
  return r;
}

json::Json TextEvaluation::to_json() const {
  json::Json out = json::Json::object();
  out["checkpoint"] = checkpoint;
  out["text"] = text;
  out["bytes"] = bytes;
  out["predicted_bytes"] = predicted;
  out["seq_len"] = seq_len;
  out["windows"] = windows;
  out["last_window_counted"] = last_window_counted;
  out["batches"] = batches;
  out["batch_size"] = batch_size;
  out["loss"] = loss;
  out["bits_per_byte"] = bits_per_byte;
  out["accuracy"] = accuracy;
  out["layers"] = routing_json(routing);
  return out;
}

std::string TextEvaluation::to_text() const {
  const std::string last = last_window_counted == seq_len
                               ? std::string()
                               : fmt::format(" (the last one the file's final {} bytes, of which the last {} count)",
                                             seq_len + 1, last_window_counted);
  return fmt::format("eval {} on {}: {} bytes, {} predicted in {} windows of {}{}, {} batches of {}\nloss {:.6f}, {:.4f} "
                     "bits per byte, accuracy {:.4f}",
                     checkpoint, text, bytes, predicted, windows, seq_len, last, batches, batch_size, loss,
                     bits_per_byte, accuracy) +
         routing_text(routing);
}

}  // namespace moegrad::train
