// Learning-rate schedules: pure functions of the step, so a resumed run continues the same
// schedule from the step it saved.
//
//   opt.set_lr(schedule.lr_at(opt.step_count()));  // before each opt.step()
//
// `step` is the 0-based index of the update the rate is for (the optimizer's step_count()
// before that update). This is PyTorch's convention: a torch LR scheduler that has been
// stepped s times gives lr_at(s).
#pragma once
#include <cstdint>
#include <string>

namespace moegrad::optim {

class Schedule {
 public:
  virtual ~Schedule() = default;
  // The learning rate for update `step` (>= 0; a negative step throws "[<name>] ...").
  virtual double lr_at(std::int64_t step) const = 0;
  virtual std::string describe() const = 0;  // "WarmupCosine(base_lr=0.1, ...)"
};

// lr_at(s) = lr. (Not PyTorch's ConstantLR, which scales by a factor for some iterations.)
class ConstantLR final : public Schedule {
 public:
  explicit ConstantLR(double lr);  // lr >= 0
  double lr_at(std::int64_t step) const override;
  std::string describe() const override;

 private:
  double lr_;
};

// Linear warmup from 0 to base_lr over warmup_steps updates, then a half cosine from base_lr
// down to min_lr at total_steps, and min_lr after that. With W = warmup_steps, T = total_steps:
//   s < W:       lr = base_lr * s / W
//   s >= T:      lr = min_lr
//   otherwise:   p = (s - W) / (T - W)
//                lr = min_lr + (base_lr - min_lr) * 0.5 * (1 + cos(pi * p))
// so lr_at(0) = 0 (when W > 0), lr_at(W) = base_lr (when W < T) and lr_at(s) = min_lr for
// s >= T. With min_lr = 0 and W < T this is transformers' get_cosine_schedule_with_warmup
// (num_cycles = 0.5).
// Requires base_lr >= 0, min_lr >= 0, 0 <= warmup_steps <= total_steps.
class WarmupCosine final : public Schedule {
 public:
  WarmupCosine(double base_lr, std::int64_t warmup_steps, std::int64_t total_steps,
               double min_lr = 0);
  double lr_at(std::int64_t step) const override;
  std::string describe() const override;

 private:
  double base_lr_, min_lr_;
  std::int64_t warmup_, total_;
};

// torch.optim.lr_scheduler.StepLR: lr_at(s) = base_lr * gamma^floor(s / step_size).
// Requires base_lr >= 0, step_size > 0, gamma >= 0.
class StepDecay final : public Schedule {
 public:
  StepDecay(double base_lr, std::int64_t step_size, double gamma = 0.1);
  double lr_at(std::int64_t step) const override;
  std::string describe() const override;

 private:
  double base_lr_;
  std::int64_t step_size_;
  double gamma_;
};

}  // namespace moegrad::optim
