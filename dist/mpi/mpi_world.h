// The MPI side of dist/world.cpp (compiled only with MOEGRAD_WITH_MPI).
#pragma once
#include <memory>

#include "dist/process_group.h"

namespace moegrad::dist::mpi {

// Joins the MPI job (MPI_Init_thread) and returns MPI_COMM_WORLD as a group labelled "world".
std::shared_ptr<ProcessGroup> make_world_group();
void abort_if_initialized(int code);

}  // namespace moegrad::dist::mpi
