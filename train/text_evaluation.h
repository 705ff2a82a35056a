// A language model (--task text) over a whole text file: what `moegrad eval CKPT --text FILE` does.
//
//   train::InferenceModel m("lm/step-000001000.h5");
//   auto text = train::load_text("held-out.txt", "--text");
//   train::TextEvaluation r = train::evaluate_text(m, text, 16);   // 16 windows per batch
//   r.bits_per_byte;                                               // r.loss / ln 2
//
// Every byte but the first is predicted exactly once, from the bytes before it in its window.
// With S the checkpoint's --seq-len and n bytes, window w < (n - 1) / S (rounded down) reads bytes
// [w S, w S + S] (inputs [w S, w S + S), targets one byte on). When S does not divide n - 1, the r
// = (n - 1) mod S bytes left over are predicted by one more window, the file's last S + 1 bytes,
// of which only the last r positions count (so they see a full context, and no byte counts
// twice). Windows go in file order into batches of `batch` windows (the last batch may be
// shorter); batch j draws from draw_seed(seed, 1, j) (inference.h), as `moegrad predict` does on
// the same windows. The loss is the mean over predicted bytes of -log softmax(logits)[target]
// (natural log, the ops of the model's own loss), the trainer's eval loss; bits per byte = loss /
// ln 2, the trainer's eval_bits_per_byte.
#pragma once
#include <cstdint>
#include <memory>
#include <string>

#include "train/inference.h"
#include "train/text_data.h"

namespace moegrad::train {

struct TextEvaluation {
  std::string checkpoint, text;
  std::int64_t bytes = 0;      // the file's size
  std::int64_t predicted = 0;  // bytes predicted: bytes - 1
  std::int64_t seq_len = 0, windows = 0, batches = 0, batch_size = 0;
  std::int64_t last_window_counted = 0;  // positions counted in the last window: seq_len, or the r above
  double loss = 0, bits_per_byte = 0;
  double accuracy = 0;  // the fraction of predicted bytes that are their position's argmax
  LayerRouting routing;

  json::Json to_json() const;
  std::string to_text() const;  // what `moegrad eval --text` prints
};

// Refused with one line: a checkpoint that is not --task text, a text shorter than one window of
// --seq-len + 1 bytes, batch < 1.
TextEvaluation evaluate_text(InferenceModel& m, const std::shared_ptr<const TextData>& text, std::int64_t batch);

}  // namespace moegrad::train
