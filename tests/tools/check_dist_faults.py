#!/usr/bin/python3
"""A rank that stops or dies ends the whole MPI job, with a clear message, and nothing hangs.

    check_dist_faults.py MPIRUN DIST_FAULT_PROBE

Runs tests/dist/dist_fault_probe.cpp as 2 ranks (shared memory, oversubscribed):
  1. rank 1 stops itself (SIGSTOP) before an all_reduce, collective timeout 3 s: the job exits
     non-zero within 60 s and prints the timeout's one line naming all_reduce, the group, the
     step and world rank 1;
  2. the same before an all_to_all_v on an expert-parallel sub-group;
  3. the same before a split of the world (MPI_Comm_split itself has no timeout);
  4. rank 1 kills itself (SIGKILL): the job exits non-zero within 60 s.
Each job runs in its own session; past 90 s its process group is killed and the check fails.
"""
import os
import re
import signal
import subprocess
import sys
import time

MPIRUN, PROBE = sys.argv[1], sys.argv[2]
ENV = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1", OMP_NUM_THREADS="1",
           ASAN_OPTIONS="detect_leaks=0:abort_on_error=1")
failures = []


def run_job(mode, timeout_s):
    cmd = [MPIRUN, "-np", "2", "--oversubscribe", "--mca", "btl", "self,vader", PROBE, mode, str(timeout_s)]
    start = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=ENV, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=90)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        return None, time.monotonic() - start, out.decode(errors="replace")
    finally:
        # Whatever the job left behind (a stopped rank) goes with its session.
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return proc.returncode, time.monotonic() - start, out.decode(errors="replace")


def check(name, ok, detail):
    print(f"{'ok' if ok else 'FAIL'}: {name}")
    if not ok:
        failures.append(name)
        print(detail)


def expect_ended(name, mode, timeout_s, line_pattern=None):
    rc, seconds, out = run_job(mode, timeout_s)
    detail = f"--- exit {rc} after {seconds:.1f} s; output:\n{out}---"
    check(f"{name}: the job ended (no hang)", rc is not None, detail)
    if rc is None:
        return
    check(f"{name}: non-zero exit", rc != 0, detail)
    check(f"{name}: within 60 s (took {seconds:.1f} s)", seconds < 60, detail)
    check(f"{name}: both ranks started", out.count(": ready") == 2, detail)
    # Rank 0 waited for rank 1 in vain. (mpirun resumes a stopped rank 1 with SIGCONT before it
    # kills it, so rank 1 itself may finish an exchange whose data had already arrived.)
    check(f"{name}: rank 0 did not complete the collective", "rank 0: the collective completed" not in out, detail)
    if line_pattern:
        lines = [l for l in out.splitlines() if re.fullmatch(line_pattern, l)]
        check(f"{name}: the one-line message", len(lines) >= 1, detail + f"\nexpected a line matching: {line_pattern}")
        if lines:
            print(f"    {lines[0]}")


expect_ended("SIGSTOP before all_reduce", "stop", 3,
             r"\[dist\] all_reduce on world \(2 ranks\) at step 12 did not complete within 3 s: "
             r"world rank 1 did not arrive; aborting the job")
expect_ended("SIGSTOP before all_to_all_v", "stop-a2a", 3,
             r"\[dist\] all_to_all_v on expert-parallel group 0 \(world ranks 0, 1\) at step 12 did not complete "
             r"within 3 s: world rank 1 did not arrive; aborting the job")
expect_ended("SIGSTOP before split", "stop-split", 3,
             r"\[dist\] split on world \(2 ranks\) at step 12 did not complete within 3 s: "
             r"world rank 1 did not arrive; aborting the job")
expect_ended("SIGKILL before all_reduce", "kill", 3)

print(f"{len(failures)} failure(s)")
sys.exit(1 if failures else 0)
