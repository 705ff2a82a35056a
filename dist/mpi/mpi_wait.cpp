#include "dist/mpi/mpi_wait.h"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <deque>
#include <mutex>
#include <thread>

#include "dist/mpi/mpi_runtime.h"
#include "dist/world.h"

namespace moegrad::dist::mpi {

namespace {
using Clock = std::chrono::steady_clock;

constexpr int kAskTag = 1;     // payload: the asker's count (int64)
constexpr int kAnswerTag = 2;  // payload: the answerer's count (int64)
constexpr int kSpinTests = 200;

struct Reply {
  std::int64_t value = 0;
  MPI_Request request = MPI_REQUEST_NULL;
};
// The channels and the answers in flight (a deque keeps their buffers in place). Never
// destroyed: groups unregister from static destructors.
struct Registry {
  std::mutex mutex;
  std::vector<ArrivalChannel*> channels;
  std::deque<Reply> replies;
};
Registry& registry() {
  static auto* r = new Registry;
  return *r;
}

double seconds_since(Clock::time_point start) { return std::chrono::duration<double>(Clock::now() - start).count(); }

// "at step 12 " or "" when not training.
std::string step_text() {
  const std::int64_t step = current_step();
  return step >= 0 ? fmt::format(" at step {}", step) : std::string();
}

[[noreturn]] void abort_with(const char* op, const ProcessGroup& g, const std::string& what) {
  abort_job(fmt::format("[dist] {} on {}{} {}; aborting the job", op, g.describe(), step_text(), what));
}

// Answers every pending probe on every channel with this rank's count there.
void answer_probes() {
  Registry& reg = registry();
  std::lock_guard lock(reg.mutex);
  for (ArrivalChannel* ch : reg.channels) {
    for (;;) {
      int flag = 0;
      MPI_Status status;
      if (MPI_Iprobe(MPI_ANY_SOURCE, kAskTag, ch->comm, &flag, &status) != MPI_SUCCESS || !flag) break;
      std::int64_t asked = 0;
      MPI_Recv(&asked, 1, MPI_INT64_T, status.MPI_SOURCE, kAskTag, ch->comm, MPI_STATUS_IGNORE);
      Reply& r = reg.replies.emplace_back();
      r.value = ch->seq;
      MPI_Isend(&r.value, 1, MPI_INT64_T, status.MPI_SOURCE, kAnswerTag, ch->comm, &r.request);
    }
  }
  while (!reg.replies.empty()) {
    int done = 0;
    MPI_Test(&reg.replies.front().request, &done, MPI_STATUS_IGNORE);
    if (!done) break;
    reg.replies.pop_front();
  }
}

// For the first 50 ms, yields the core (a rank sharing it runs; otherwise the wait notices the
// other ranks' arrival at once, where a sleep would add up to its length to every exchange);
// then sleeps a little longer each time, up to 1 ms, so that a long wait does not burn a core.
void back_off(int& round, Clock::time_point start) {
  if (seconds_since(start) < 0.05) {
    std::this_thread::yield();
    return;
  }
  const int micros = std::min(1000, 20 << std::min(round, 6));
  ++round;
  std::this_thread::sleep_for(std::chrono::microseconds(micros));
}

[[noreturn]] void report_timeout(const char* op, const ProcessGroup& g, ArrivalChannel& ch, double timeout) {
  const int n = g.size(), me = g.rank();
  std::vector<std::int64_t> counts(static_cast<std::size_t>(n), -1);
  counts[static_cast<std::size_t>(me)] = ch.seq;
  const std::int64_t mine = ch.seq;
  std::vector<MPI_Request> asks, answers;
  for (int q = 0; q < n; ++q) {
    if (q == me) continue;
    MPI_Request r;
    MPI_Isend(&mine, 1, MPI_INT64_T, q, kAskTag, ch.comm, &r);
    asks.push_back(r);
    MPI_Irecv(&counts[static_cast<std::size_t>(q)], 1, MPI_INT64_T, q, kAnswerTag, ch.comm, &r);
    answers.push_back(r);
  }
  // A member waiting in a collective answers within milliseconds; the grace period covers one
  // that is slow to be scheduled (oversubscribed cores).
  const double grace = std::clamp(timeout, 1.0, 5.0);
  const auto start = Clock::now();
  int round = 0;
  for (;;) {
    answer_probes();
    int done = 0;
    MPI_Testall(static_cast<int>(answers.size()), answers.data(), &done, MPI_STATUSES_IGNORE);
    if (done || seconds_since(start) > grace) break;
    back_off(round, start);
  }
  // Unanswered receives stay posted: the job is aborted next, and MPI_Abort ends them.
  std::vector<int> missing;
  for (int q = 0; q < n; ++q)
    if (counts[static_cast<std::size_t>(q)] < mine) missing.push_back(g.world_ranks()[static_cast<std::size_t>(q)]);
  const std::string within = fmt::format("did not complete within {:g} s", timeout);
  if (missing.empty())
    abort_with(op, g, within + ": every member arrived (different collectives or arguments on different ranks?)");
  abort_with(op, g,
             fmt::format("{}: world rank{} {} did not arrive", within, missing.size() > 1 ? "s" : "", fmt::join(missing, ", ")));
}
}  // namespace

void register_channel(ArrivalChannel* channel) {
  std::lock_guard lock(registry().mutex);
  registry().channels.push_back(channel);
}

void unregister_channel(ArrivalChannel* channel) {
  std::lock_guard lock(registry().mutex);
  std::erase(registry().channels, channel);
}

void wait_all(std::span<MPI_Request> requests, const char* op, const ProcessGroup& g, ArrivalChannel& channel) {
  const double timeout = collective_timeout();
  const auto start = Clock::now();
  int round = 0;
  for (int spin = 0;; ++spin) {
    int done = 0;
    const int rc = MPI_Testall(static_cast<int>(requests.size()), requests.data(), &done, MPI_STATUSES_IGNORE);
    if (rc != MPI_SUCCESS) abort_with(op, g, "failed: " + error_text(rc));
    if (done) return;
    if (spin < kSpinTests) continue;
    answer_probes();
    if (timeout > 0 && seconds_since(start) > timeout) report_timeout(op, g, channel, timeout);
    back_off(round, start);
  }
}

}  // namespace moegrad::dist::mpi
