#include "dist/mpi/mpi_runtime.h"

#include <cstdlib>
#include <thread>

namespace moegrad::dist::mpi {

namespace {
std::thread::id g_mpi_thread;  // the thread that called MPI_Init_thread

void finalize_at_exit() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (finalized) return;
  release_all_groups();
  MPI_Finalize();
}
}  // namespace

void ensure_initialized() {
  int done = 0;
  MPI_Initialized(&done);
  if (done) return;
  int provided = 0;
  const int rc = MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided);
  if (rc != MPI_SUCCESS) fail("dist", "MPI_Init_thread failed (error {}): cannot join the MPI job", rc);
  // Errors come back as return codes (MOEGRAD_MPI_CHECK turns them into one line), not aborts
  // without a word; communicators split from the world inherit this.
  MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
  g_mpi_thread = std::this_thread::get_id();
  std::atexit(finalize_at_exit);
}

bool initialized() {
  int init = 0, finalized = 0;
  MPI_Initialized(&init);
  MPI_Finalized(&finalized);
  return init && !finalized;
}

void check_thread(const char* op) {
  MOEGRAD_CHECK(std::this_thread::get_id() == g_mpi_thread, op,
                "called from another thread than the one that joined the MPI job (MPI_THREAD_FUNNELED: "
                "collectives must come from the thread that first called dist::world())");
}

void abort_if_initialized(int code) {
  if (initialized()) MPI_Abort(MPI_COMM_WORLD, code);
}

std::string error_text(int code) {
  char text[MPI_MAX_ERROR_STRING];
  int length = 0;
  if (MPI_Error_string(code, text, &length) != MPI_SUCCESS) return "MPI error " + std::to_string(code);
  return std::string(text, static_cast<std::size_t>(length));
}

}  // namespace moegrad::dist::mpi

