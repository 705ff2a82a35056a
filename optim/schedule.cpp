// Learning-rate schedules.
#include "optim/schedule.h"

#include <fmt/format.h>

#include <cmath>
#include <numbers>

#include "core/error.h"

namespace moegrad::optim {

namespace {
void check_step(const char* op, std::int64_t step) {
  MOEGRAD_CHECK(step >= 0, op, "step {} is negative", step);
}
}  // namespace

ConstantLR::ConstantLR(double lr) : lr_(lr) {
  MOEGRAD_CHECK(lr >= 0, "ConstantLR", "invalid learning rate {}: must be >= 0", lr);
}
double ConstantLR::lr_at(std::int64_t step) const {
  check_step("ConstantLR", step);
  return lr_;
}
std::string ConstantLR::describe() const { return fmt::format("ConstantLR(lr={})", lr_); }

WarmupCosine::WarmupCosine(double base_lr, std::int64_t warmup_steps, std::int64_t total_steps, double min_lr)
    : base_lr_(base_lr), min_lr_(min_lr), warmup_(warmup_steps), total_(total_steps) {
  const char* op = "WarmupCosine";
  MOEGRAD_CHECK(base_lr >= 0, op, "invalid base_lr {}: must be >= 0", base_lr);
  MOEGRAD_CHECK(min_lr >= 0, op, "invalid min_lr {}: must be >= 0", min_lr);
  MOEGRAD_CHECK(warmup_steps >= 0, op, "invalid warmup_steps {}: must be >= 0", warmup_steps);
  MOEGRAD_CHECK(total_steps >= warmup_steps, op, "total_steps {} is less than warmup_steps {}", total_steps,
                warmup_steps);
}

double WarmupCosine::lr_at(std::int64_t step) const {
  check_step("WarmupCosine", step);
  if (step < warmup_) return base_lr_ * static_cast<double>(step) / static_cast<double>(warmup_);
  if (step >= total_) return min_lr_;
  const double progress = static_cast<double>(step - warmup_) / static_cast<double>(total_ - warmup_);
  return min_lr_ + (base_lr_ - min_lr_) * 0.5 * (1.0 + std::cos(std::numbers::pi * progress));
}

std::string WarmupCosine::describe() const {
  return fmt::format("WarmupCosine(base_lr={}, warmup_steps={}, total_steps={}, min_lr={})", base_lr_, warmup_,
                     total_, min_lr_);
}

StepDecay::StepDecay(double base_lr, std::int64_t step_size, double gamma)
    : base_lr_(base_lr), step_size_(step_size), gamma_(gamma) {
  const char* op = "StepDecay";
  MOEGRAD_CHECK(base_lr >= 0, op, "invalid base_lr {}: must be >= 0", base_lr);
  MOEGRAD_CHECK(step_size > 0, op, "invalid step_size {}: must be > 0", step_size);
  MOEGRAD_CHECK(gamma >= 0, op, "invalid gamma {}: must be >= 0", gamma);
}

double StepDecay::lr_at(std::int64_t step) const {
  check_step("StepDecay", step);
  return base_lr_ * std::pow(gamma_, static_cast<double>(step / step_size_));
}

std::string StepDecay::describe() const {
  return fmt::format("StepDecay(base_lr={}, step_size={}, gamma={})", base_lr_, step_size_, gamma_);
}

}  // namespace moegrad::optim
