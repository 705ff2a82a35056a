// The step named in timeout messages and the collective timeout: process-wide settings.
#include <atomic>

#include "dist/process_group.h"

namespace moegrad::dist {

namespace {
std::atomic<std::int64_t> g_step{-1};
std::atomic<double> g_timeout{300.0};
}  // namespace

void set_step(std::int64_t step) { g_step.store(step, std::memory_order_relaxed); }
std::int64_t current_step() { return g_step.load(std::memory_order_relaxed); }
void set_collective_timeout(double seconds) { g_timeout.store(seconds, std::memory_order_relaxed); }
double collective_timeout() { return g_timeout.load(std::memory_order_relaxed); }

}  // namespace moegrad::dist
