// The main of the MPI test programs (moegrad_dist_tests, moegrad_dist_moe_tests), run by CTest
// under mpirun with 2 and 4 ranks (moegrad_add_mpi_test). Every rank runs every test case in the
// same order, so the collectives inside them match. The job fails when any rank fails; rank 0
// reports in full, the others report failures only.
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <cstdio>
#include <filesystem>
#include <string>

#include "dist/world.h"

namespace dist = moegrad::dist;

int main(int argc, char** argv) {
  dist::ProcessGroup* world = nullptr;
  try {
    world = &dist::world();
  } catch (const moegrad::Error& e) {  // e.g. launched as N ranks by a build without MPI
    std::fprintf(stderr, "%s\n", e.what());
    return 1;
  }
  dist::ProcessGroup& w = *world;
  // A failed REQUIRE on one rank skips the rest of its test case, and the other ranks would wait
  // in that case's next collective: end the job within a minute instead of hanging.
  dist::set_collective_timeout(60);
  doctest::Context context(argc, argv);
  if (w.rank() != 0) context.setOption("minimal", true);
  if (w.size() > 1) context.setOption("no-colors", true);  // the ranks' lines interleave
  const int rc = context.run();
  if (context.shouldExit()) return rc;
  const std::int64_t failed = dist::all_reduce_value(w, std::int64_t{rc != 0}, dist::Reduction::max);
  const std::string program = std::filesystem::path(argv[0]).filename().string();
  if (w.rank() == 0) std::printf("%s: %d rank(s), %s\n", program.c_str(), w.size(), failed ? "FAILED" : "all passed");
  return failed ? 1 : 0;
}
