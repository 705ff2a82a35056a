// The training loop: batch -> forward -> task loss + aux losses -> backward (with gradient
// accumulation) -> non-finite check -> clip -> optimizer step -> log -> evaluate -> checkpoint.
// Resuming restores the model, the optimizer, the step, the data cursor and the generator that
// draws gate noise, so a run stopped at step K and resumed equals an uninterrupted one bit for
// bit on the CPU.
//
// Devices (config.device: cpu, cuda, cuda:N): the model is initialised on the CPU and moved
// (Module::to), batches are moved as they are drawn, and the optimizer's state is allocated
// with the parameters, so every step runs on the device. A CUDA device that is not present
// stops the constructor before any work ("[train] --device cuda:0 but no CUDA device is
// present"). Losses and metrics are read on the host. Checkpoints hold host copies, so a GPU
// run's checkpoint resumes on the CPU and the reverse (loading copies into the model's device).
#pragma once
#include <cstdio>
#include <memory>
#include <string>

#include "optim/optim.h"
#include "train/checkpoint.h"
#include "train/config.h"
#include "train/progress.h"

namespace moegrad::train {

struct TrainResult {
  std::int64_t start_step = 0, end_step = 0;  // updates done before this run and after it
  double last_loss = 0;                       // task loss of the last step
  double eval_loss = 0;                       // the last evaluation's task loss
  double eval_accuracy = -1;                  // sequence task
  std::string resumed_from;                   // checkpoint path, "" for a fresh start
  std::string last_checkpoint;                // "" when none was written
  double wall_s = 0;
};

class Trainer {
 public:
  // Validates the configuration (and that its device exists) and builds the model, optimizer,
  // schedule and data. Progress and messages go to log (nullptr: nowhere).
  explicit Trainer(TrainConfig config, std::FILE* log = stderr);
  ~Trainer();

  TrainResult run();

  TaskModel& model() { return *model_; }
  optim::Optimizer& optimizer() { return *optimizer_; }
  const TrainConfig& config() const { return config_; }
  core::Device device() const { return device_; }
  // A checkpoint of the current state (what run() writes), its tensors on the host.
  Checkpoint checkpoint(std::int64_t step) const;
  // Restores a checkpoint; throws (naming the file) if it does not fit this run.
  void restore(const std::string& path);
  // The task loss (and accuracy) over the fixed evaluation batches, in eval mode.
  std::pair<double, double> evaluate();

 private:
  double train_step(std::int64_t step, StepReport& report, json::Json& record);
  std::string nonfinite_origin(const Batch& batch);
  Batch to_device(Batch batch) const;  // the batch's tensors on the run's device

  TrainConfig config_;
  std::unique_ptr<std::FILE, int (*)(std::FILE*)> null_log_{nullptr, &std::fclose};
  std::FILE* log_;
  core::Device device_ = core::Device::cpu();
  core::Generator gen_;  // parameter init, then gate noise and routing draws
  std::shared_ptr<TaskModel> model_;
  std::unique_ptr<optim::Optimizer> optimizer_;
  std::unique_ptr<optim::Schedule> schedule_;
  std::unique_ptr<DataSource> data_, eval_data_;
  std::unique_ptr<CheckpointDir> ckpt_dir_;
  std::int64_t step_ = 0;
};

}  // namespace moegrad::train
