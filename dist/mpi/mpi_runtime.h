// The MPI library's lifetime in this process (MPI_THREAD_FUNNELED: every MPI call comes from the
// thread that called world() first) and the check that turns an MPI error into moegrad::Error.
// Compiled only with MOEGRAD_WITH_MPI.
#pragma once
#include <mpi.h>

#include <string>

#include "core/error.h"

namespace moegrad::dist::mpi {

// MPI_Init_thread on the first call (no-op afterwards); registers MPI_Finalize at exit, after
// every group's communicators (and NCCL communicators) are released.
void ensure_initialized();
bool initialized();  // initialised and not yet finalised
// MPI_THREAD_FUNNELED: fails with one line naming op unless called on the thread that joined.
void check_thread(const char* op);
// MPI_Abort(MPI_COMM_WORLD, code) when MPI is up; returns otherwise.
void abort_if_initialized(int code);
// "MPI_ERR_TRUNCATE: message truncated"
std::string error_text(int code);

// Called by ensure_initialized's exit handler before MPI_Finalize (dist/mpi/mpi_group.cpp).
void release_all_groups();

}  // namespace moegrad::dist::mpi

// MOEGRAD_MPI_CHECK(MPI_Ibcast(...), "broadcast") throws "[broadcast] MPI_Ibcast(...) failed: ...".
#define MOEGRAD_MPI_CHECK(call, op)                                                         \
  do {                                                                                      \
    const int mpi_rc_ = (call);                                                             \
    if (mpi_rc_ != MPI_SUCCESS)                                                             \
      ::moegrad::fail(op, "{} failed: {}", #call, ::moegrad::dist::mpi::error_text(mpi_rc_)); \
  } while (0)
