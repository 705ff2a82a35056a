// `moegrad train --tensorboard DIR`: the metrics records as TensorBoard event files.
//
// The file is DIR/events.out.tfevents.<unix time>.<hostname>.<pid>.moegrad, a sequence of
// TFRecords (tfrecord.h) each holding one Event (proto/tensorboard_event.proto); the first
// holds file_version "brain.Event:2". Per logged step one Event carries:
//   * a scalar per number in the record but "step" (loss, aux_loss, balance_loss,
//     router_z_loss, lr, grad_norm, tokens, ms_per_step, tokens_per_s, eval_loss, ...), tagged
//     with its key;
//   * per MoE layer i (the record's "layers"): the histogram "moe/layer<i>/expert_load", whose
//     bucket e (limits e .. e + 1) counts the tokens expert e kept, and the scalars
//     "moe/layer<i>/dropped_fraction", ".../dead_experts", ".../max_load_over_mean";
//   * when the record holds "eval_loss": per layer the image "moe/layer<i>/expert_load_heatmap",
//     one row of kCellHeight px per expert and one column of kCellWidth px per step this writer
//     logged (the last kMaxColumns of them: a resumed run starts a new file and a new map), colour = the expert's share of the step's tokens (dark: none,
//     middle: an even share 1/E, bright: 2/E or more).
// Each Event goes out in one write(2) (nothing buffered), so a crash loses at most the last one.
// The proto and protobuf stay inside tensorboard.cpp.
#pragma once
#include <cstdint>
#include <memory>
#include <string>

#include "train/json_read.h"

namespace moegrad::train {

class TensorBoardWriter {
 public:
  static constexpr std::int64_t kCellHeight = 8, kCellWidth = 4, kMaxColumns = 256;

  // Creates DIR (and its parents) and a new event file in it; throws
  // "[tensorboard] cannot create '...': ..." when it cannot.
  explicit TensorBoardWriter(const std::string& dir);
  ~TensorBoardWriter();
  TensorBoardWriter(const TensorBoardWriter&) = delete;
  TensorBoardWriter& operator=(const TensorBoardWriter&) = delete;

  const std::string& path() const;  // the event file
  // One metrics record, the object --metrics gets ({"step": N, "loss": ..., "layers": [...]}).
  void write(const json::Json& record);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace moegrad::train
