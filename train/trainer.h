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
//
// One run per folder: run() holds an exclusive lock on --ckpt-dir (taken in the constructor,
// before the folder is read or cleaned) and on --metrics (run_lock.h), released when run()
// returns or throws. Work is never destroyed silently: a run that would replace checkpoints past
// the step it starts from, or a fresh run whose --metrics file is not empty, is refused unless
// config.overwrite (then those checkpoints are removed at start and the metrics file emptied);
// a resumed run appends to --metrics after dropping the records past the step it resumes from.
//
// Many processes (`mpirun -np W moegrad train --expert-parallel P ...`, train/parallel.h): every
// rank takes its own micro-batches, so a step takes W x grad_accum micro-batches of --batch-size;
// rank r's a-th micro-batch of a step is global micro-batch cursor + r * grad_accum + a, and its
// random draws (gate noise, routing uniforms) come from a generator seeded by (seed, that
// index), never by the rank. A step is therefore the same computation whatever W and
// grad_accum, as long as W x grad_accum is: runs at (W, P, A) = (1, 1, 4), (2, 2, 2), (4, 2, 1)
// end with the same parameters up to the order of floating-point sums, and a checkpoint written
// at one W resumes at another. Rank 0 writes the log, the metrics and the checkpoints (one HDF5
// file with the whole model); an error on any rank stops every rank.
#pragma once
#include <cmath>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "optim/optim.h"
#include "train/checkpoint.h"
#include "train/config.h"
#include "train/parallel.h"
#include "train/progress.h"
#include "train/run_lock.h"

namespace moegrad::train {

struct TrainResult {
  std::int64_t start_step = 0, end_step = 0;  // updates done before this run and after it
  std::int64_t last_step = 0, steps = 0;      // where the run ends (--stop-at or --steps); --steps
  // Task loss of the last step taken and the last evaluation's loss (and accuracy, sequence
  // task); NaN (-1) when unknown. When there was nothing to do, the checkpoint's stored values.
  double last_loss = NAN;
  double eval_loss = NAN;
  double eval_accuracy = -1;
  std::int64_t skipped_steps = 0;             // --skip-nonfinite
  bool nothing_to_do = false;                 // resumed at (or past) the last step
  bool bits_per_byte = false;                 // --task text: the summary adds eval bits per byte
  std::string resumed_from;                   // checkpoint path, "" for a fresh start
  std::string last_checkpoint;                // "" when none was written
  std::string metrics;                        // --metrics, "" for none
  double wall_s = 0;

  // What `moegrad train` prints at the end: "done: steps 0..1000 in 2.1 s, last loss ...", or
  // "nothing to do: the run is already at its last step (step 1000 of 1000); ...", then the
  // checkpoint and metrics lines.
  std::string summary() const;
};

class Trainer {
 public:
  // Validates the configuration (and that its device exists) and builds the model, optimizer,
  // schedule and data. Progress and messages go to log (nullptr: nowhere).
  explicit Trainer(TrainConfig config, std::FILE* log = stderr);
  ~Trainer();

  // Trains from the resumed step to --stop-at or --steps. Throws (after writing what it did)
  // when --skip-nonfinite skipped every step it ran: nothing was trained.
  TrainResult run();

  TaskModel& model() { return *model_; }
  optim::Optimizer& optimizer() { return *optimizer_; }
  const TrainConfig& config() const { return config_; }
  core::Device device() const { return device_; }
  // A checkpoint of the current state (what run() writes), its tensors on the host; the last
  // loss and evaluation go in its attributes (last_loss, eval_loss, eval_accuracy).
  // Collective when distributed (the experts are gathered to rank 0; other ranks get an empty
  // model and optimizer state).
  Checkpoint checkpoint(std::int64_t step);
  // Restores a checkpoint; throws (naming the file) if it does not fit this run.
  void restore(const std::string& path);
  // The task loss (and accuracy) over the fixed evaluation batches, in eval mode.
  std::pair<double, double> evaluate();
  const Parallel& parallel() const { return *par_; }

 private:
  double train_step(std::int64_t step, StepReport& report, json::Json& record);
  std::string nonfinite_origin(const Batch& batch);
  // Fails on every rank, naming the first option that differs, unless all ranks run one config.
  void check_same_config() const;
  // The model of this run's options, initialised from gen (the whole model: no expert placement).
  std::shared_ptr<TaskModel> build_model(core::Generator* gen) const;
  // Batch `index` of the training stream, with the generator seeded for it (see above).
  Batch micro_batch(std::int64_t index);
  // Sums of the step's figures over the ranks (losses, tokens, routing counts).
  void reduce_report(double* sums, std::size_t n, std::vector<nn::moe::RoutingStats>& routing);
  Batch to_device(Batch batch) const;  // the batch's tensors on the run's device
  // The checkpoint files past the step the run starts from (every one for a fresh run), which
  // it would replace or mix with; throws unless --overwrite when there are any.
  std::vector<std::string> checkpoints_to_replace(bool resumed) const;
  // Opens and locks --metrics; refuses a non-empty file for a fresh run unless --overwrite.
  MetricsFile open_metrics(bool resumed);

  TrainConfig config_;
  std::unique_ptr<std::FILE, int (*)(std::FILE*)> null_log_{nullptr, &std::fclose};
  std::FILE* log_;
  core::Device device_ = core::Device::cpu();
  core::Generator gen_;  // parameter init, then gate noise and routing draws
  std::shared_ptr<TaskModel> model_;
  std::unique_ptr<optim::Optimizer> optimizer_;
  std::unique_ptr<optim::Schedule> schedule_;
  std::unique_ptr<DataSource> data_, eval_data_;
  std::string eval_note_;  // --task tensors: which batches evaluate, for the log
  std::unique_ptr<FolderLock> ckpt_lock_;  // held from the constructor to the end of run()
  std::unique_ptr<CheckpointDir> ckpt_dir_;
  std::unique_ptr<Parallel> par_;
  std::int64_t step_ = 0;
  std::int64_t cursor_ = 0;  // the global index of the step's first micro-batch
  // The last step's loss and the last evaluation (stored in checkpoints); NaN / -1: none yet.
  double last_loss_ = NAN, eval_loss_ = NAN, eval_accuracy_ = -1;
};

}  // namespace moegrad::train
