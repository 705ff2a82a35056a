// world(): a LocalGroup when started alone, the MPI world when launched by mpirun
// (dist/mpi/). The launcher is recognised from its environment.
#include "dist/world.h"

#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <mutex>

#include "dist/local_group.h"

#ifdef MOEGRAD_WITH_MPI
#include "dist/mpi/mpi_world.h"
#endif

namespace moegrad::dist {

bool built_with_mpi() {
#ifdef MOEGRAD_WITH_MPI
  return true;
#else
  return false;
#endif
}

bool built_with_nccl() {
#ifdef MOEGRAD_WITH_NCCL
  return true;
#else
  return false;
#endif
}

namespace {
// A positive integer from the environment, or 0.
int env_int(const char* name) {
  const char* v = std::getenv(name);
  if (v == nullptr || *v == '\0') return 0;
  char* end = nullptr;
  const long n = std::strtol(v, &end, 10);
  return (*end == '\0' && n > 0 && n < (1L << 30)) ? static_cast<int>(n) : 0;
}

// Set by Open MPI's mpirun (OMPI_*), MPICH/Hydra and Intel MPI (PMI_*); PMIx launchers (srun,
// prterun) set PMIX_RANK but no size.
constexpr const char* kSizeVars[] = {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE"};
constexpr const char* kRankVars[] = {"OMPI_COMM_WORLD_RANK", "PMI_RANK", "PMIX_RANK"};
}  // namespace

bool launched_by_mpirun() {
  for (const char* v : kSizeVars)
    if (std::getenv(v) != nullptr) return true;
  for (const char* v : kRankVars)
    if (std::getenv(v) != nullptr) return true;
  return false;
}

int launched_size() {
  for (const char* v : kSizeVars)
    if (const int n = env_int(v); n > 0) return n;
  return 1;
}

int launched_local_rank() {
  for (const char* name : {"OMPI_COMM_WORLD_LOCAL_RANK", "MPI_LOCALRANKID"})
    if (const char* v = std::getenv(name); v != nullptr && *v != '\0') {
      char* end = nullptr;
      const long n = std::strtol(v, &end, 10);
      if (*end == '\0' && n >= 0 && n < (1L << 30)) return static_cast<int>(n);
    }
  return -1;
}

namespace {
std::shared_ptr<ProcessGroup> make_world() {
  if (!launched_by_mpirun()) return std::make_shared<LocalGroup>("world");
#ifdef MOEGRAD_WITH_MPI
  return mpi::make_world_group();
#else
  const int n = launched_size();
  MOEGRAD_CHECK(n <= 1, "dist",
                "this process was launched as one of {} ranks by mpirun, but this moegrad was built without MPI "
                "(install libopenmpi-dev and configure with -DMOEGRAD_MPI=ON)",
                n);
  return std::make_shared<LocalGroup>("world");
#endif
}

std::mutex g_world_mutex;
std::shared_ptr<ProcessGroup> g_world;
}  // namespace

std::shared_ptr<ProcessGroup> world_ptr() {
  std::lock_guard lock(g_world_mutex);
  if (!g_world) g_world = make_world();
  return g_world;
}

ProcessGroup& world() { return *world_ptr(); }

void abort_job(const std::string& message, int code) {
  std::fflush(stdout);
  std::fprintf(stderr, "%s\n", message.c_str());
  std::fflush(stderr);
#ifdef MOEGRAD_WITH_MPI
  mpi::abort_if_initialized(code);
#endif
  // Alone: leave at once, without running destructors of objects another thread may be using.
  std::_Exit(code);
}

}  // namespace moegrad::dist
