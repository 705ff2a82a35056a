// Waiting for a non-blocking collective, with the collective timeout. While a rank waits it
// polls MPI_Test (a short spin, then sleeps growing to 1 ms, so an idle wait does not burn a
// core) and answers other ranks' arrival probes. Past collective_timeout() it finds the members
// that did not arrive, with MPI point-to-point on the group's probe communicator:
//   - each group counts the collectives this rank has entered on it (ArrivalChannel::seq);
//   - the timed-out rank sends its count to every member and, for a short grace period,
//     collects theirs; a member waiting in any collective answers at once;
//   - members that never answer, or answer with a smaller count, did not arrive;
// then aborts the job (abort_job) with one line:
//   [dist] all_to_all_v on expert-parallel group 0 (world ranks 0, 1) at step 12 did not
//   complete within 10 s: world rank 1 did not arrive; aborting the job
#pragma once
#include <mpi.h>

#include <cstdint>
#include <span>
#include <vector>

#include "dist/process_group.h"

namespace moegrad::dist::mpi {

struct ArrivalChannel {
  MPI_Comm comm = MPI_COMM_NULL;  // a duplicate of the group's communicator, for probes only
  std::int64_t seq = 0;           // collectives this rank has entered on the group
};

// Channels answered while any wait polls (a rank blocked in one group's collective still
// answers probes about another group).
void register_channel(ArrivalChannel* channel);
void unregister_channel(ArrivalChannel* channel);

// Waits for every request. An MPI error or the timeout aborts the job (the other ranks would
// otherwise wait forever), naming op and g.
void wait_all(std::span<MPI_Request> requests, const char* op, const ProcessGroup& g, ArrivalChannel& channel);

}  // namespace moegrad::dist::mpi
