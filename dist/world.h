// The job's processes. A program launched by mpirun (Open MPI, MPICH: the launcher's environment
// says so) joins the MPI job on the first call to world(); one started alone is a world of one
// process and never touches MPI, so single-process runs and tests need no MPI at all.
//
//   dist::ProcessGroup& w = dist::world();
//   auto ep = w.split(w.rank() / P, w.rank(), "expert-parallel group");
#pragma once
#include <string>

#include "dist/process_group.h"

namespace moegrad::dist {

// Whether this build has MPI (and NCCL, with the CUDA backend).
bool built_with_mpi();
bool built_with_nccl();
// Whether a launcher started this process (mpirun, mpiexec, srun: their environment says so).
bool launched_by_mpirun();
// The launcher's world size from the environment (1 when started alone), without joining.
int launched_size();
// This process's rank among the job's ranks on its node, from the launcher's environment
// (Open MPI, MPICH/Hydra); -1 when the launcher does not say.
int launched_local_rank();
// The world group; joins the MPI job on first call when launched by mpirun. A program launched
// as one of N > 1 ranks by a build without MPI fails with one line that says so.
ProcessGroup& world();
std::shared_ptr<ProcessGroup> world_ptr();
// Ends the whole job at once (MPI_Abort when the world has more than one rank; exit otherwise),
// after printing message (one line, to stderr). For errors after which the other ranks would
// wait forever in their next collective.
[[noreturn]] void abort_job(const std::string& message, int code = 1);

}  // namespace moegrad::dist
